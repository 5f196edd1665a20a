"""Restoring from a backup (agent/daemon/restore.py), in process: an agent whose database is
older than what the exchange accepted from it takes its latest snapshot back from the log,
verified, and drops the pending one the log supersedes; a log that holds no later snapshot of
ours is a finding. tests/integration/test_backup_restore.py does it with real processes."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from invsync.agent.daemon.restore import Restore
from invsync.agent.daemon.rotation import OwnKeys
from invsync.agent.exchange.chain_reset import ChainReset, sign_chain_reset
from invsync.agent.exchange.log_entry import log_entry
from invsync.agent.exchange.rejections import LogInconsistentError
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.exchange.trusted import Verified
from invsync.agent.model.record import CertRecord
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, Rig
from tests.log_watch_helpers import EXPIRES, ISSUED, AgentSide, agent_side, restorer

WHY = "the server refused our push"


@pytest.fixture
def sides(
    tmp_path: Path, rig: Rig, keys: Keys, records: list[CertRecord]
) -> Iterator[tuple[AgentSide, AgentSide]]:
    """secom pushed versions 1 to 3; its database was backed up after version 1 and restored."""
    current = agent_side(tmp_path / "secom.db", rig, keys, "secom")
    current.push(rig, records, 1)
    backup = tmp_path / "backup.db"
    source, target = sqlite3.connect(current.store.path), sqlite3.connect(backup)
    with closing(source), closing(target):
        source.backup(target)  # what `sqlite3 secom.db ".backup backup.db"` does
    current.push(rig, records[1:], 2)
    current.push(rig, records[2:], 3)
    restored = agent_side(backup, rig, keys, "secom")
    yield current, restored
    current.store.close()
    restored.store.close()


def test_a_restored_database_continues_after_its_latest_snapshot_in_the_log(
    sides: tuple[AgentSide, AgentSide], keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    current, restored = sides
    store = restored.store
    assert (store.latest_sent_snapshot(PAIRING) or pytest.fail()).version == 1
    # The push the server refused left a version 2 of other bytes pending.
    store.record_sent_snapshot(
        PAIRING, 2, b"refused", SNAPSHOT_PAYLOAD_TYPE, [], ISSUED, EXPIRES, pending=True
    )
    with caplog.at_level(logging.WARNING, "invsync.agent"):
        adopted = restorer(restored, keys).restore(restored.client, restored.trust, WHY)
    assert (adopted.version, adopted.payload) == (3, current.sent[3])
    latest = store.latest_sent_snapshot(PAIRING)
    assert latest == current.store.latest_sent_snapshot(PAIRING)  # bytes, signatures, times
    assert store.pending_snapshot(PAIRING) is None
    state = store.trusted_state(PAIRING)
    assert state == restored.trust.state
    assert state.own == Verified(3, hashlib.sha256(current.sent[3]).hexdigest())
    assert state.receipts[3] == current.trust.state.receipts[3]  # the server's, from the log
    assert state.checkpoint is not None and state.checkpoint.size == 9
    assert (
        f"party=secom pairing={PAIRING} this database is behind the exchange ({WHY}): "
        "continuing after version=3, log entry 6"
    ) in caplog.messages


def test_a_log_without_a_later_snapshot_of_ours_is_a_finding_and_changes_nothing(
    sides: tuple[AgentSide, AgentSide], keys: Keys
) -> None:
    current, _ = sides
    before = current.trust.state
    message = (
        f"refused [log-inconsistent]: pairing {PAIRING!r}: {WHY}, but the log's 9 entries hold "
        "no snapshot of secom later than version 3"
    )
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(message)}$"):
        restorer(current, keys).restore(current.client, current.trust, WHY)
    assert current.store.trusted_state(PAIRING) == before == current.trust.state
    assert (current.store.latest_sent_snapshot(PAIRING) or pytest.fail()).version == 3
    (refusal,) = current.store.refusals(PAIRING)
    assert refusal.finding.code == "log-inconsistent"


def test_a_snapshot_in_the_log_that_we_did_not_sign_is_not_adopted(
    sides: tuple[AgentSide, AgentSide], keys: Keys
) -> None:
    _, restored = sides
    impostor = Restore(
        party="secom",
        keys=OwnKeys(keys.stranger),  # as if secom's key were another: its entries fail
        store=restored.store,
        watch=restored.watch,
        clock=lambda: NOW,
    )
    message = (
        f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 6 (secom's latest "
        "snapshot in the log), signed as secom: 0 of 1 required signatures verified; signed by "
        f"untrusted key {keys.secom.keyid}"
    )
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(message)}$"):
        impostor.restore(restored.client, restored.trust, WHY)
    assert (restored.store.latest_sent_snapshot(PAIRING) or pytest.fail()).version == 1


def test_a_snapshot_a_chain_reset_set_aside_is_not_adopted(
    sides: tuple[AgentSide, AgentSide], rig: Rig, keys: Keys
) -> None:
    """The operator set secom's version 3 aside (pushed with its key, not by this agent): the
    restored database continues after version 2, the last snapshot of ours the chain keeps."""
    current, restored = sides
    with rig.store.transaction():
        index = rig.store.log_size()
        aside = tuple(rig.store.supersede("secom", PAIRING, 2, index))
        reset = ChainReset(SERVER, "secom", PAIRING, 2, aside, "INC-42", NOW)
        statement = sign_chain_reset(reset, keys.server)
        entry = log_entry(
            pb.LOG_ENTRY_KIND_CHAIN_RESET, statement, party="secom", pairing=PAIRING, version=2
        )
        rig.exchange.log.append(rig.store, entry)
    adopted = restorer(restored, keys).restore(restored.client, restored.trust, WHY, floor=2)
    assert (adopted.version, adopted.payload) == (2, current.sent[2])
