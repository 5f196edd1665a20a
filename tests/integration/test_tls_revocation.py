"""A client certificate the federation CA revoked (`tls revoke`, issue 14) is refused on every
call once the server reads the CA's CRL as `tls.client_crl`; the other party's certificate of
the same CA works on. A CRL the client CA did not sign stops the server at start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from invsync.agent.exchange.federation_ca import crl_of
from invsync.agent.exchange.pki import make_federation, new_ca
from invsync.agent.exchange.snapshot import to_chunks
from invsync.agent.model.snapshot import ROOT as ROOT_ROLE
from invsync.server.localfed import (
    PARTIES,
    running_server,
    server_process,
    write_federation,
)
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation
from tests.integration.test_exchange import _rules, _signed, _snapshot_of, _stored_snapshots
from tests.integration.test_tls import calls, channel, jprs_snapshot
from tests.paths import ROOT

pytestmark = pytest.mark.integration


def _with_crl(work: Path) -> None:
    toml = work / "server.toml"
    text = toml.read_text().replace(
        'client_ca = "tls/ca.pem"\n', 'client_ca = "tls/ca.pem"\nclient_crl = "tls/crl.pem"\n', 1
    )
    assert "client_crl" in text
    toml.write_text(text)


@pytest.fixture
def jprs_revoked(tmp_path: Path) -> Iterator[tuple[Federation, int]]:
    """A federation whose CA revoked jprs's client certificate."""
    write_federation(tmp_path)
    ca = new_ca()
    make_federation(tmp_path / "tls", "localhost", list(PARTIES), ca=ca)
    jprs = x509.load_pem_x509_certificate((tmp_path / "tls" / "jprs.crt").read_bytes())
    crl = crl_of(ca, [(jprs.serial_number, datetime.now(UTC).isoformat())], datetime.now(UTC))
    (tmp_path / "tls" / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    _with_crl(tmp_path)
    with server_process(tmp_path) as port:
        yield Federation(tmp_path, port), jprs.serial_number


def test_a_revoked_client_certificate_is_denied_every_call(
    jprs_revoked: tuple[Federation, int],
) -> None:
    fed, serial = jprs_revoked
    tls = fed.work / "tls"
    env = jprs_snapshot(fed)
    ch = channel(fed, tls / "jprs.crt", tls / "jprs.key")
    errors = calls(pb_grpc.ExchangeStub(ch), env)
    ch.close()
    revoked = f"TLS client certificate CN='jprs' (serial {serial:x}) is revoked ({tls / 'crl.pem'})"
    assert {name: e.code() for name, e in errors.items()} == dict.fromkeys(
        errors, grpc.StatusCode.PERMISSION_DENIED
    )
    assert {name: e.details() for name, e in errors.items()} == dict.fromkeys(errors, revoked)
    assert [_rules(e) for e in errors.values()] == [["access-denied"]] * len(errors)
    assert _stored_snapshots(fed) == 0
    # SECOM's certificate from the same CA is not on the CRL: its snapshot is accepted.
    client = fed.client("secom")
    client.push(_signed(fed, "secom", _snapshot_of(fed, "secom", ROOT_ROLE, "secom-jprs")))
    client.close()
    assert _stored_snapshots(fed) == 1


def test_a_crl_the_client_ca_did_not_sign_stops_the_server_at_start(tmp_path: Path) -> None:
    write_federation(tmp_path)
    other = new_ca()
    crl = crl_of(other, [(12345, datetime.now(UTC).isoformat())], datetime.now(UTC))
    (tmp_path / "tls" / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    _with_crl(tmp_path)
    command = [sys.executable, "-m", "invsync.server.cli", "server", "run"]
    command += ["--config", str(tmp_path / "server.toml")]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert done.returncode == 2, done.stderr
    expected = (
        f"{tmp_path / 'server.toml'}: tls.client_crl: {tmp_path / 'tls' / 'crl.pem'} is not "
        f"signed by a CA of tls.client_ca ({tmp_path / 'tls' / 'ca.pem'})"
    )
    assert expected in done.stderr


def _wait_for(log: Path, text: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text()}")


def _jprs_denied(fed: Federation) -> str | None:
    """The details of jprs's push refusal, or None when it was accepted."""
    tls = fed.work / "tls"
    ch = channel(fed, tls / "jprs.crt", tls / "jprs.key")
    try:
        pb_grpc.ExchangeStub(ch).PushSnapshot(to_chunks(jprs_snapshot(fed)), timeout=10)
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"
    finally:
        ch.close()
    return None


def test_sighup_applies_a_new_crl_and_keeps_the_old_one_when_the_new_does_not_verify(
    tmp_path: Path,
) -> None:
    write_federation(tmp_path)
    ca = new_ca()
    make_federation(tmp_path / "tls", "localhost", list(PARTIES), ca=ca)
    now = datetime.now(UTC)
    (tmp_path / "tls" / "crl.pem").write_bytes(
        crl_of(ca, [], now).public_bytes(serialization.Encoding.PEM)
    )
    _with_crl(tmp_path)
    log = tmp_path / "logs" / "server.log"
    with running_server(tmp_path) as (proc, port):
        fed = Federation(tmp_path, port)
        assert _jprs_denied(fed) is None  # accepted: nothing revoked yet
        jprs = x509.load_pem_x509_certificate((tmp_path / "tls" / "jprs.crt").read_bytes())
        revoked = crl_of(ca, [(jprs.serial_number, now.isoformat())], now)
        (tmp_path / "tls" / "crl.pem").write_bytes(revoked.public_bytes(serialization.Encoding.PEM))
        proc.send_signal(signal.SIGHUP)
        _wait_for(log, "1 revoked client certificates (tls.client_crl)")
        denied = _jprs_denied(fed)
        assert denied is not None and denied.startswith("PERMISSION_DENIED: TLS client ")
        assert f"(serial {jprs.serial_number:x}) is revoked" in denied
        # A CRL from another CA is refused on reload; the one applied stays.
        other = crl_of(new_ca(), [], now).public_bytes(serialization.Encoding.PEM)
        (tmp_path / "tls" / "crl.pem").write_bytes(other)
        proc.send_signal(signal.SIGHUP)
        refused = f"reload of {tmp_path / 'server.toml'} refused, the running configuration stays: "
        _wait_for(log, refused)
        assert "is not signed by a CA of tls.client_ca" in log.read_text()
        assert _jprs_denied(fed) == denied
        assert proc.poll() is None  # still serving
        assert "until the server restarts" not in log.read_text()
