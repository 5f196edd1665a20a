"""TLS certificates are replaced by a restart, and no state is lost.

The federation's TLS CA issues new certificates, with new keys, to the server and both agents.
The server restarts on the same database and address: it presents its new certificate, still
holds and serves the earlier snapshots and report to the agents' new certificates, and the
next cycle of both agent processes continues each party's version chain (2 after 1).
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.exchange.pki import make_federation, new_ca
from invsync.agent.exchange.snapshot import decode_header
from invsync.agent.report.body import parse_report_body, read_report_file, verify_report
from invsync.server.localfed import PARTIES, server_process, write_federation
from tests.integration.conftest import Federation
from tests.integration.ports import free_port
from tests.integration.test_exchange import _latest_reports, _refresh_every_cycle, _run_both_agents
from tests.integration.test_retry import _pin_port

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"
HOLDERS = ("server", *PARTIES)  # who holds a TLS certificate


def _snapshots(work: Path) -> dict[tuple[str, int], bytes]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute("select party, version, payload from snapshots").fetchall()
    return {(str(party), int(version)): bytes(payload) for party, version, payload in rows}


def _report_ids(work: Path) -> list[str]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        return [str(r) for (r,) in db.execute("select report_id from reports order by created_at")]


def _certificate(work: Path, holder: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((work / "tls" / f"{holder}.crt").read_bytes())


def _public_key(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _served_certificate(fed: Federation, party: str) -> x509.Certificate:
    """The certificate the server presents to `party`'s current TLS certificate."""
    tls = fed.work / "tls"
    context = ssl.create_default_context(cafile=tls / "ca.pem")
    context.load_cert_chain(tls / f"{party}.crt", tls / f"{party}.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", fed.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_renewed_tls_certificates_take_effect_on_restart_and_state_carries_over(
    tmp_path: Path,
) -> None:
    write_federation(tmp_path)
    ca = new_ca()  # kept, as the operator of a federation CA keeps its key
    make_federation(tmp_path / "tls", "localhost", list(PARTIES), ca=ca)
    fed = Federation(tmp_path, free_port())
    _pin_port(tmp_path, fed.port)  # the same address before and after the restart
    with server_process(tmp_path):
        _run_both_agents(fed)
    before = _snapshots(tmp_path)
    assert sorted(before) == [("jprs", 1), ("secom", 1)]
    earlier = _report_ids(tmp_path)  # the first push's (peer absent), then the cycle's
    first_report = earlier[-1]
    ca_pem = (tmp_path / "tls" / "ca.pem").read_bytes()
    old = {holder: _certificate(tmp_path, holder) for holder in HOLDERS}

    make_federation(tmp_path / "tls", "localhost", list(PARTIES), ca=ca)  # the renewal
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca_pem  # nobody's trust changes
    for holder in HOLDERS:
        new = _certificate(tmp_path, holder)
        assert new.subject == old[holder].subject  # the same Common Name: the same party
        assert new.serial_number != old[holder].serial_number
        assert _public_key(new) != _public_key(old[holder])

    with server_process(tmp_path):
        assert _served_certificate(fed, "jprs") == _certificate(tmp_path, "server")
        client = fed.client("jprs")  # presents jprs's new certificate
        try:
            assert client.report(PAIRING).report_id == first_report
            peer = client.fetch_peer_snapshot(PAIRING, 1)
        finally:
            client.close()
        assert peer.payload == before[("secom", 1)]
        for party in PARTIES:  # push again though nothing changed: the chain must continue
            _refresh_every_cycle(tmp_path / f"{party}.toml")
        _run_both_agents(fed)

    after = _snapshots(tmp_path)
    assert sorted(after) == [("jprs", 1), ("jprs", 2), ("secom", 1), ("secom", 2)]
    for party in PARTIES:
        assert after[(party, 1)] == before[(party, 1)]
        v2 = decode_header(after[(party, 2)])
        assert v2.previous_digest == hashlib.sha256(after[(party, 1)]).digest()
    assert _report_ids(tmp_path)[: len(earlier)] == earlier
    reports = [read_report_file(path) for path in _latest_reports(fed)]
    assert reports[0].payload == reports[1].payload
    assert verify_report(reports[0]).complete, verify_report(reports[0]).describe()
    body = parse_report_body(reports[0].payload)
    assert (body.root.version, body.subordinate.version) == (2, 2)
