"""docs/operations.md section 4 with real processes: an agent's database restored from a backup
older than what the server accepted continues after the server's last version, learnt from the
exchange's log (agent/daemon/restore.py), and the pairing's report is co-signed again.

The server runs as a process (the `federation` fixture) and each cycle is the real
`invsync agent run --once` of each party. JPRS's inventory changes every cycle; SECOM's never,
so it co-signs the report on JPRS's new snapshot in its own cycle, started once JPRS pushed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon import restore
from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.checkpoint import open_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keys import generate, load_verify_key
from invsync.agent.exchange.snapshot import decode_header
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server.localfed import CYCLE_SECONDS, command
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import Federation, await_report, wait_for

pytestmark = pytest.mark.integration

PUSHED = "jprs: pushed secom-jprs snapshot version"
COMPLETE = "(server valid, root valid, subordinate valid)"
SERVER = "demo-exchange"  # server.localfed's server name: its log's origin


def _once(work: Path, party: str, out: Path) -> subprocess.Popen[bytes]:
    config = str(work / f"{party}.toml")
    with out.open("wb") as log:
        return subprocess.Popen(
            command("agent", "run", "--config", config, "--once"),
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _cycle(fed: Federation, number: int) -> str:
    """One cycle of both agents: JPRS pushes, then SECOM starts and co-signs; JPRS's output."""
    work = fed.work
    outs = {party: work / "logs" / f"{party}-{number}.log" for party in ("jprs", "secom")}
    started = [_once(work, "jprs", outs["jprs"])]
    try:
        # The first cycle needs both snapshots at once; later ones, JPRS's new one first, and
        # its report (made off the push), which SECOM must settle on.
        wait_for(outs["jprs"], PUSHED if number > 1 else "jprs: collected")
        if number > 1:
            client = fed.client("secom")
            try:
                await_report(client, None, number)
            finally:
                client.close()
        started.append(_once(work, "secom", outs["secom"]))
        for proc, out in zip(reversed(started), (outs["secom"], outs["jprs"]), strict=True):
            assert proc.wait(CYCLE_SECONDS) == EXIT_FINDINGS, out.read_text()  # the demo's
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
    assert COMPLETE in outs["secom"].read_text()
    return outs["jprs"].read_text()


def _drop_last_certificate(pem: Path) -> None:
    """JPRS's repository loses a certificate: its inventory changed."""
    marker = "-----BEGIN CERTIFICATE-----"
    text = pem.read_text()
    pem.write_text(text[: text.rindex(marker)])


def _backup(database: Path, backup: Path) -> None:
    """SQLite's online backup, as `sqlite3 DB ".backup FILE"` makes it while the agent runs."""
    with closing(sqlite3.connect(database)) as source, closing(sqlite3.connect(backup)) as copy:
        source.backup(copy)


def _server_snapshots(work: Path) -> dict[int, bytes]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute(
            "select version, payload from snapshots where party = 'jprs' order by version"
        ).fetchall()
    return {int(version): bytes(payload) for version, payload in rows}


def _backed_up_at_version_2(federation: Federation) -> tuple[Path, str]:
    """JPRS pushes versions 1 to 4, its database backed up after version 2: the backup, and
    its inventory's PEM file as it was then."""
    work = federation.work
    pem, database = work / "data" / "jprs_ca_certificates.pem", work / "state" / "jprs.db"
    assert f"{PUSHED} 1 (first snapshot)" in _cycle(federation, 1)
    _drop_last_certificate(pem)
    assert f"{PUSHED} 2 (content changed)" in _cycle(federation, 2)

    # The backup, taken as docs/operations.md says with the daemon stopped: the clean stop
    # folded the -wal file into the database, which is copied as it is.
    assert not database.with_name("jprs.db-wal").exists()
    backup = work / "jprs-backup.db"
    shutil.copyfile(database, backup)
    at_backup = pem.read_text()
    for version in (3, 4):
        _drop_last_certificate(pem)
        assert f"{PUSHED} {version} (content changed)" in _cycle(federation, version)
    shutil.copyfile(backup, database)  # restored: this database last sent version 2
    return pem, at_backup


def test_a_restored_agent_continues_after_the_servers_last_version_and_co_signs(
    federation: Federation,
) -> None:
    """Its inventory changed since: the push the database would make (version 3) is refused
    as a rollback, and the refusal sends the agent to the log."""
    work = federation.work
    pem, _ = _backed_up_at_version_2(federation)
    _drop_last_certificate(pem)
    out = _cycle(federation, 5)
    assert f"{PUSHED} 5 (continues after our latest snapshot in the exchange's log)" in out, out
    assert "this database is behind the exchange (the server refused our push: " in out
    assert (
        "snapshot rejected [rollback]: version 3 is below the last accepted version 4 of party "
        "'jprs' in pairing 'secom-jprs'): continuing after version=4, log entry " in out
    )
    assert COMPLETE in out

    stored = _server_snapshots(work)
    assert sorted(stored) == [1, 2, 3, 4, 5]  # the refused version 3 not kept, none twice
    headers = {version: decode_header(payload) for version, payload in stored.items()}
    assert headers[5].previous_digest == hashlib.sha256(stored[4]).digest()
    # Each snapshot carries the latest checkpoint its agent verified (none before the first).
    pinned = {SERVER: load_verify_key(work / "keys" / "server.pub")}
    assert headers[1].log_checkpoint == b""
    sizes = [open_checkpoint(headers[v].log_checkpoint, SERVER, pinned).size for v in (2, 3, 5)]
    assert sizes == sorted(sizes) and sizes[0] > 0


def test_a_restored_agent_with_nothing_to_push_learns_it_from_the_latest_report(
    federation: Federation,
) -> None:
    """Its inventory is the backup's: no push would be refused, and the server's latest report
    naming our version 4 sends the agent to the log before it would wait for a report on 2."""
    pem, at_backup = _backed_up_at_version_2(federation)
    pem.write_text(at_backup)
    out = _cycle(federation, 5)
    assert f"{PUSHED} 5 (continues after our latest snapshot in the exchange's log)" in out, out
    assert "this database is behind the exchange (the server's latest report names our " in out
    assert "version 4, this database 2): continuing after version=4" in out
    assert COMPLETE in out
    assert sorted(_server_snapshots(federation.work)) == [1, 2, 3, 4, 5]


def test_a_push_refused_as_a_rollback_sends_the_agent_to_the_log(
    federation: Federation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a report to tell it (a server that made none), the refusal does: never stuck."""
    work = federation.work
    agent = Agent(load_agent_config(work / "jprs.toml"))
    pairing = agent.config.pairings["secom-jprs"]
    agent.collect()
    # Each report is waited for (made off the push), so the log's entries are in a fixed order.
    assert agent.push(pairing) == 1
    await_report(agent.client, 0, 1)
    database, backup = agent.store.path, work / "jprs-backup.db"
    _backup(database, backup)
    for version in (2, 3):
        assert agent.push(pairing) == version
        await_report(agent.client, 0, version)
    agent.close()

    shutil.copyfile(backup, database)
    for suffix in ("-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    _drop_last_certificate(work / "data" / "jprs_ca_certificates.pem")
    restored = Agent(load_agent_config(work / "jprs.toml"))
    restored.collect()  # changed: it pushes version 2 again, which the server refuses
    monkeypatch.setattr(restore, "reported_version", lambda *args: 0)  # no report to tell
    monkeypatch.setattr("invsync.agent.daemon.sync.reported_version", lambda *args: 0)
    with caplog.at_level(logging.WARNING, "invsync.agent"):
        outcome = restored.sync(pairing)
    (line,) = [m for m in caplog.messages if "this database is behind the exchange" in m]
    assert "(the server refused our push: " in line and "snapshot rejected [rollback]: " in line
    assert line.endswith("continuing after version=3, log entry 6")
    assert (outcome.version, outcome.reason and outcome.reason.name) == (4, "RESTORED")
    stored = _server_snapshots(work)
    assert sorted(stored) == [1, 2, 3, 4]
    assert decode_header(stored[4]).previous_digest == hashlib.sha256(stored[3]).digest()
    assert restored.store.pending_snapshot(pairing.name) is None  # the refused version 2: gone
    restored.close()


def test_a_report_the_agent_refuses_tells_nothing_and_does_not_stop_its_cycle(
    federation: Federation, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The look at the latest report, in a cycle with nothing to push, is only a hint of a
    restore: a forged one stops nothing. A cycle that pushes does not look."""
    agent = Agent(load_agent_config(federation.work / "jprs.toml"))
    pairing = agent.config.pairings["secom-jprs"]
    agent.collect()
    assert agent.push(pairing) == 1
    impostor = generate()
    forged = Envelope(REPORT_PAYLOAD_TYPE, b"{}", (Sig(impostor.keyid, b"signature"),))
    served = pb.Report(report_id="0" * 64, envelope=forged.to_pb())
    asked: list[str] = []

    def forged_report(pairing: str, report_id: str = "") -> pb.Report:
        asked.append(pairing)
        return served

    monkeypatch.setattr(agent.client, "report", forged_report)
    with caplog.at_level(logging.WARNING, "invsync.agent"):
        unchanged = agent.sync(pairing)
    assert (unchanged.version, unchanged.reason, asked) == (1, None, ["secom-jprs"])
    _drop_last_certificate(federation.work / "data" / "jprs_ca_certificates.pem")
    agent.collect()
    outcome = agent.sync(pairing)
    agent.close()
    assert (outcome.version, outcome.reason and outcome.reason.name) == (2, "CHANGED")
    assert asked == ["secom-jprs"]  # the push was not preceded by a look at the report
    assert (
        "pairing=secom-jprs the latest report tells nothing of our version: refused "
        "[bad-server-signature]: the exchange server (report): 0 of 1 required signatures "
        f"verified; signed by untrusted key {impostor.keyid}"
    ) in caplog.messages
