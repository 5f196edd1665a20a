"""Issue 14 item 5: the exchange server rotates its signing key in band, with real processes.

A real server and both real agents over mutual TLS run a cycle; the operator stops the server
and runs `invsync server keys rotate`, which logs the new key signed by the old and the new key.
The server refuses to start with a new key it did not announce, and with the key it retired; it
starts with the announced one. With no change to either agent's configuration (both pin the old
key only), the next cycles pass: JPRS's agent follows the rotation on the receipt for its push,
SECOM's on what it reads next (the report, or the announcement in the log), and both record
it. An auditor who pinned the old key alone verifies the server's export, and JPRS's own, across
the rotation.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from invsync.agent.exchange.keys import load_signing_key, load_verify_key
from invsync.agent.report.body import parse_report_body, read_report_file, verify_report
from invsync.server.localfed import command, write_federation
from invsync.v1 import invsync_pb2 as pb
from tests.integration.test_chain_reset import _drop_last_certificate, _invsync, _serving
from tests.integration.test_evidence import SERVER, _pins
from tests.integration.test_exchange import (
    _latest_reports,
    _run_both_agents,
    _run_changed_then_peer,
)

pytestmark = pytest.mark.integration


def _rotate(work: Path) -> subprocess.CompletedProcess[str]:
    return _invsync(
        work,
        "server",
        "keys",
        "rotate",
        "--config",
        "server.toml",
        "--new-key",
        "keys/server-2.key",
    )


def _log_kinds(work: Path) -> list[int]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute("SELECT leaf FROM log_entries ORDER BY idx").fetchall()
    return [pb.LogEntry.FromString(bytes(leaf)).kind for (leaf,) in rows]


def _followed(work: Path, party: str) -> list[tuple[int, bytes]]:
    with sqlite3.connect(work / "state" / f"{party}.db") as db:
        rows = db.execute("SELECT log_index, new_key FROM server_key_rotations").fetchall()
    return [(int(index), bytes(key)) for index, key in rows]


def test_the_server_rotates_its_key_in_band_and_the_agents_follow(tmp_path: Path) -> None:
    write_federation(tmp_path)
    old = load_verify_key(tmp_path / "keys" / "server.pub")
    generated = subprocess.run(
        command("keys", "generate", "--out", str(tmp_path / "keys" / "server-2.key")),
        capture_output=True,
        text=True,
        check=True,
    )
    new = load_signing_key(tmp_path / "keys" / "server-2.key").public
    assert new.keyid in generated.stdout
    with _serving(tmp_path) as fed:
        _run_both_agents(fed)
        agent_configs = {p: (tmp_path / f"{p}.toml").read_text() for p in ("secom", "jprs")}
        running = _rotate(tmp_path)
        assert running.returncode == 3
        assert "another invsync daemon" in running.stderr

    server_toml = tmp_path / "server.toml"
    configured = server_toml.read_text()
    switched = configured.replace(
        'signing_key = "keys/server.key"', 'signing_key = "keys/server-2.key"'
    )
    server_toml.write_text(switched)  # a switch by hand, which the log would not record
    unannounced = _invsync(tmp_path, "server", "run", "--config", "server.toml")
    assert unannounced.returncode == 2, unannounced.stderr
    assert (
        f"server.signing_key (key {new.keyid[:16]}) did not sign the log's latest checkpoint: it "
        "is not the server's key in force"
    ) in unannounced.stderr
    server_toml.write_text(configured)

    done = _rotate(tmp_path)
    assert done.returncode == 0, done.stderr
    index = len(_log_kinds(tmp_path)) - 1
    assert done.stdout == (
        f"server {SERVER}: key {new.keyid} announced in log entry {index}, replacing "
        f"{old.keyid}\nnext: set server.signing_key = 'keys/server-2.key' in server.toml, then "
        "start the server\n"
    )
    assert _log_kinds(tmp_path)[-1] == pb.LOG_ENTRY_KIND_SERVER_KEY

    refused = _invsync(tmp_path, "server", "run", "--config", "server.toml")
    assert refused.returncode == 2, refused.stderr
    assert (
        f"server.signing_key (key {old.keyid[:16]}) was retired by log entry {index}: the key "
        f"in force is {new.keyid[:16]}, announced by log entry {index}; set server.signing_key "
        "to that key"
    ) in refused.stderr

    server_toml.write_text(switched)
    _drop_last_certificate(tmp_path / "data" / "jprs_ca_certificates.pem")  # JPRS pushes
    with _serving(tmp_path) as fed:
        # `_serving` writes each agent's configuration for the new port: nothing else changes.
        for party, text in agent_configs.items():
            now = (tmp_path / f"{party}.toml").read_text()
            assert now.replace(str(fed.port), "PORT") == _with_port(text, "PORT"), party
        jprs = _run_changed_then_peer(fed, changed="jprs", peer="secom")
        assert f"rotated its signing key to {new.keyid[:16]} (log entry {index})" in jprs, jprs
        assert "jprs: pushed secom-jprs snapshot version 2" in jprs, jprs
        _run_both_agents(fed)  # and a steady cycle after it
        # A party's own export, as the server serves it to JPRS, from the key JPRS pinned.
        party_bundle = tmp_path / "jprs-bundle"
        taken = _invsync(
            tmp_path, "evidence", "export", "--config", "jprs.toml", "--out", str(party_bundle)
        )
        assert taken.returncode == 0, taken.stderr

    for party in ("secom", "jprs"):
        assert _followed(tmp_path, party) == [(index, new.spki_der)]
    latest = read_report_file(_latest_reports(fed)[-1])
    result = verify_report(latest)
    assert result.complete, result.describe()
    body = parse_report_body(latest.payload)
    assert [s.keyid for s in body.signers if s.role == "server"] == [new.keyid]
    assert body.subordinate.version == 2

    bundle = tmp_path / "bundle"
    exported = _invsync(
        tmp_path, "evidence", "export", "--server-config", "server.toml", "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    for exported_by in (bundle, party_bundle):
        verified = _invsync(
            tmp_path, "evidence", "verify", str(exported_by), "--server", SERVER, *_pins(fed)
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert (
            f"the server {SERVER} rotated to server key {new.keyid[:16]} (retired {old.keyid[:16]})"
        ) in verified.stdout


def _with_port(config: str, port: str) -> str:
    """An agent configuration with its server address's port replaced."""
    head, _, rest = config.partition('address = "127.0.0.1:')
    return head + 'address = "127.0.0.1:' + port + rest[rest.index('"') :]
