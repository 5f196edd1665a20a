"""Issue 12: the exchange operator's way out of a misused party key, with real processes.

JPRS's signing key is misused: a snapshot JPRS never made is pushed as its version 2, and SECOM's
agent verifies it as its peer's. The operator stops the server and runs `invsync server
reset-chain`; after a restart JPRS's own version 2 is accepted, both agents' cycles pass (each
reads the signed reset from the log), and an auditor's offline verification of the exported log
shows the set-aside snapshot, the reset and the chain that follows it.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.exchange.keys import load_signing_key
from invsync.agent.exchange.snapshot import build_payload, sign_snapshot
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.server.localfed import PARTIES, agent_config, command, server_process, write_federation
from tests.integration.conftest import Federation, await_report
from tests.integration.test_evidence import SERVER, _pins
from tests.integration.test_exchange import _run_both_agents

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"


@contextmanager
def _serving(work: Path) -> Iterator[Federation]:
    """The server process on `work`'s database; agent configurations pointing at its port."""
    with server_process(work) as port:
        for party in PARTIES:
            (work / f"{party}.toml").write_text(agent_config(party, port))
        yield Federation(work, port)


def _invsync(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=work, capture_output=True, text=True, timeout=120, check=False
    )


def _reset(work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _invsync(
        work,
        "server",
        "reset-chain",
        "--config",
        "server.toml",
        "--party",
        "jprs",
        "--pairing",
        PAIRING,
        "--reason",
        "INC-42: jprs key misused",
        *extra,
    )


def _jprs_rows(work: Path, table: str) -> list[tuple[int, str]]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute(
            f"SELECT version, payload_sha256 FROM {table} WHERE party = 'jprs' ORDER BY version"
        )
        return [(int(v), str(d)) for v, d in rows]


def _push_as_jprs_without_jprs(fed: Federation) -> str:
    """A snapshot JPRS never made, signed with its key, following its version 1; its digest."""
    ((_, first),) = _jprs_rows(fed.work, "snapshots")
    now = datetime.now(UTC)
    payload = build_payload(
        party="jprs",
        pairing=PAIRING,
        role=SUBORDINATE,
        version=2,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        records=[],
        previous_digest=bytes.fromhex(first),
    )
    fed.client("jprs").push(sign_snapshot(payload, load_signing_key(fed.work / "keys/jprs.key")))
    return _jprs_rows(fed.work, "snapshots")[-1][1]


def _drop_last_certificate(pem: Path) -> None:
    blocks = pem.read_text().split("-----END CERTIFICATE-----")
    pem.write_text("-----END CERTIFICATE-----".join(blocks[:-2]) + "-----END CERTIFICATE-----\n")


def _secom_cycle(fed: Federation) -> None:
    """SECOM's cycle alone: it verifies JPRS's latest snapshot and co-signs the report, which
    JPRS does not (exit 1: the report is not signed by every party)."""
    done = _invsync(fed.work, "agent", "run", "--config", "secom.toml", "--once", "--wait", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "co-signed report=" in done.stderr


def test_a_reset_chain_sets_a_misused_keys_snapshot_aside_and_the_exchange_goes_on(
    tmp_path: Path,
) -> None:
    write_federation(tmp_path)
    with _serving(tmp_path) as fed:
        _run_both_agents(fed)
        rogue = _push_as_jprs_without_jprs(fed)
        await_report(fed.client("secom"), 1, 2)  # made off the push
        _secom_cycle(fed)  # SECOM now holds the rogue version 2 as its peer's latest
        running = _reset(tmp_path, "--continue-from", "1")
        assert running.returncode == 3
        assert "another invsync daemon" in running.stderr

    nothing = _reset(tmp_path, "--continue-from", "2")
    assert nothing.returncode == 2
    assert "jprs's chain in pairing secom-jprs ends at version 2: nothing above version 2" in (
        nothing.stderr
    )
    done = _reset(tmp_path, "--continue-from", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(
        "the exchange operator reset jprs's chain in pairing secom-jprs to continue from "
        "version 1 (versions set aside: 2; reason: INC-42: jprs key misused); logged as entry "
    )
    # The test keeps JPRS's key (its own agent goes on with it); the operator is told.
    assert "signed a snapshot set aside and is still in parties.jprs.signing_keys" in done.stderr
    assert _jprs_rows(tmp_path, "superseded_snapshots") == [(2, rogue)]
    assert [v for v, _ in _jprs_rows(tmp_path, "snapshots")] == [1]

    _drop_last_certificate(tmp_path / "data" / "jprs_ca_certificates.pem")  # JPRS changes
    with _serving(tmp_path) as fed:
        secom, jprs = _run_both_agents(fed)
        assert "a chain reset set it aside" in jprs
        assert "the exchange operator reset jprs's chain in pairing secom-jprs" in secom
        versions = _jprs_rows(tmp_path, "snapshots")
        assert [v for v, _ in versions] == [1, 2]
        assert versions[1][1] != rogue  # JPRS's own version 2

    bundle = tmp_path / "bundle"
    exported = _invsync(
        tmp_path, "evidence", "export", "--server-config", "server.toml", "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    verified = _invsync(
        tmp_path, "evidence", "verify", str(bundle), "--server", SERVER, *_pins(fed)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "chain reset" in verified.stdout
    assert verified.stdout.count("jprs v2 (subordinate)") == 2  # the rogue and JPRS's own
