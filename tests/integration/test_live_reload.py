"""Parties and pairings change without downtime (issue 14, item 2), with real processes.

A running SECOM/JPRS federation (the server and both agents as daemons, over mutual TLS) takes
NII in: NII makes its own key and request, the exchange operator signs it, the server's and
SECOM's configuration files gain NII, and the daemons read them again (the server because its
file changed, SECOM's agent on SIGHUP). NII's first cycle is reported and signed by both. Then
NII is removed again the other way round (SECOM's agent because its file changed, then the
server on SIGHUP): NII's next call is refused by its TLS identity, what it pushed stays in the
server's database, and no cycle of SECOM or JPRS failed at any point. A configuration that does
not load is refused by both daemons, which keep running on the one they had.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from invsync.agent.exchange.keys import generate, write_private_key
from invsync.agent.exchange.pki import Issued, make_federation
from invsync.server.localfed import agent_config, command, running_server, write_federation
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

BOTH_VALID = "root valid, subordinate valid)"

NII_SERVER = """
[parties.nii]
tls_identity = "nii"
signing_keys = ["keys/nii.pub"]

[pairings.secom-nii]
root = "secom"
subordinate = "nii"
"""

NII_AT_SECOM = """
[peers.nii]
signing_keys = ["keys/nii.pub"]

[pairings.secom-nii]
role = "root"
peer = "nii"
issuer_certificates = ["data/secom_roots.pem"]
subject_organizations = ["National Institute of Informatics"]
"""


def _nii_agent_config(port: int) -> str:
    return f"""[agent]
party = "nii"
database = "state/nii.db"
signing_key = "keys/nii.key"
sources = ["data/nii_ca_certificates.pem"]
report_dir = "reports/nii"

[server]
address = "127.0.0.1:{port}"
ca = "tls/ca.pem"
cert = "nii/nii.crt"
key = "nii/nii.key"
signing_keys = ["keys/server.pub"]
name = "demo-exchange"

[peers.secom]
signing_keys = ["keys/secom.pub"]

[pairings.secom-nii]
role = "subordinate"
peer = "secom"
issuer_certificates = ["data/secom_roots.pem"]
"""


def _run(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=work, capture_output=True, text=True, timeout=120, check=False
    )


def _federation_with_kept_ca(work: Path) -> None:
    """The demo federation, its TLS certificates issued by a federation CA kept in ca/."""
    write_federation(work)
    assert _run(work, "tls", "ca", "init", "ca").returncode == 0
    ca = Issued(
        x509.load_pem_x509_certificate((work / "ca" / "ca.pem").read_bytes()),
        cast(
            ec.EllipticCurvePrivateKey,
            load_pem_private_key((work / "ca" / "ca.key").read_bytes(), None),
        ),
    )
    make_federation(work / "tls", "localhost", ["secom", "jprs"], ca=ca)


def _add_nii_files(work: Path) -> None:
    """What NII makes on its host (its keys, its request) and what the operator signs."""
    key = generate()
    write_private_key(work / "keys" / "nii.key", key)
    (work / "keys" / "nii.pub").write_bytes(key.public.public_pem())
    made = _run(work, "tls", "request", "nii", "--name", "nii")
    assert made.returncode == 0, made.stderr
    signed = _run(work, "tls", "sign", "nii/nii.csr", "--ca", "ca", "--client")
    assert signed.returncode == 0, signed.stderr


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


@contextmanager
def _daemon(work: Path, party: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    out = work / "logs" / f"{party}-daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = ("agent", "run", "--config", f"{party}.toml", "--interval", "3600", "--wait", "10")
    with out.open("w") as log:
        proc = subprocess.Popen(
            command(*args), cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _next_cycle(proc: subprocess.Popen[bytes], out: Path, party: str) -> str:
    """SIGHUP, and the daemon's output once the cycle it starts has ended."""
    ended = out.read_text().count(f"{party}: cycle ended after ")
    proc.send_signal(signal.SIGHUP)
    return _await_cycles(out, party, ended + 1)


def _await_cycles(out: Path, party: str, count: int, seconds: float = 60) -> str:
    marker = f"{party}: cycle ended after "
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        text = out.read_text()
        if text.count(marker) >= count:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{count} cycles of {party} not ended in {out}:\n{out.read_text()}")


def _nii_snapshots(work: Path) -> int:
    db = sqlite3.connect(f"file:{work / 'state' / 'server.db'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM snapshots WHERE party = 'nii'").fetchone()[0])
    finally:
        db.close()


def test_nii_joins_and_leaves_a_running_federation_and_no_other_cycle_fails(
    tmp_path: Path,
) -> None:
    work = tmp_path
    _federation_with_kept_ca(work)
    server_toml = work / "server.toml"
    server_log = work / "logs" / "server.log"
    original_server = server_toml.read_text()
    with running_server(work) as (server, port):
        for party in ("secom", "jprs"):
            (work / f"{party}.toml").write_text(agent_config(party, port))
        secom_toml = work / "secom.toml"
        original_secom = secom_toml.read_text()
        (work / "nii.toml").write_text(_nii_agent_config(port))
        with (
            _daemon(work, "secom") as (secom, secom_out),
            _daemon(work, "jprs") as (jprs, jprs_out),
        ):
            _await_cycles(secom_out, "secom", 1)
            _await_cycles(jprs_out, "jprs", 1)
            before = {d: _digests(work / d) for d in ("tls", "keys")}

            # NII joins: the server's file changes (no signal), SECOM's agent gets SIGHUP.
            _add_nii_files(work)
            server_toml.write_text(original_server + NII_SERVER)
            wait_for(server_log, f"reloaded {server_toml}: parties +nii; pairings +secom-nii")
            secom_toml.write_text(original_secom + NII_AT_SECOM)
            secom.send_signal(signal.SIGHUP)
            nii = _run(work, "agent", "run", "--config", "nii.toml", "--once", "--wait", "20")
            wait_for(secom_out, "secom: reloaded secom.toml: pairings +secom-nii; peers +nii\n")
            assert nii.returncode in (0, 1), nii.stdout + nii.stderr
            assert "nii: report reports/nii/secom-nii-" in nii.stdout
            assert BOTH_VALID in nii.stdout, nii.stdout
            text = _next_cycle(secom, secom_out, "secom")
            assert "secom: pushed secom-nii snapshot version 1" in text
            assert text.count(BOTH_VALID) >= 3, text  # secom-jprs twice, secom-nii
            # Nothing of SECOM's or JPRS's TLS files or keys changed for NII to join.
            for directory, digests in before.items():
                now = _digests(work / directory)
                assert {k: v for k, v in now.items() if not k.startswith("nii")} == digests
            pushed = _nii_snapshots(work)
            assert pushed >= 1

            # A configuration that does not load: both daemons refuse it and keep running.
            server_toml.write_text(original_server + "[parties.broken\n")
            wait_for(server_log, f"reload of {server_toml} refused, the running configuration")
            secom_toml.write_text(original_secom + NII_AT_SECOM + "[pairings.broken\n")
            wait_for(secom_out, "reload of secom.toml refused, the running configuration")
            assert server.poll() is None and secom.poll() is None

            # NII leaves: SECOM's agent first, because its file changed, then the server on
            # SIGHUP (the other way round, a SECOM cycle between the two would find its
            # pairing gone at the server: that pairing's part fails, the others run).
            secom_toml.write_text(original_secom)
            wait_for(secom_out, "secom: reloaded secom.toml: pairings -secom-nii; peers -nii\n")
            server_toml.write_text(original_server)
            server.send_signal(signal.SIGHUP)
            wait_for(server_log, f"reloaded {server_toml}: parties -nii; pairings -secom-nii")
            gone = _run(work, "agent", "run", "--config", "nii.toml", "--once", "--wait", "5")
            assert gone.returncode == 3, gone.stdout + gone.stderr
            assert "TLS client certificate CN='nii' is not the tls_identity of any party" in (
                gone.stderr
            )
            assert _nii_snapshots(work) == pushed  # its history stays

            text = _next_cycle(jprs, jprs_out, "jprs")
            assert "cycle failed" not in text
            text = _next_cycle(secom, secom_out, "secom")
            # After NII left, SECOM's cycles are secom-jprs's alone.
            assert "secom-nii" not in text.rsplit("pairings -secom-nii; peers -nii\n", 1)[1]
    for out in (secom_out, jprs_out):
        text = out.read_text()
        assert "cycle failed" not in text, text
        assert text.rstrip().endswith("stopped")
