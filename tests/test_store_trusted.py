"""Each pairing's trusted state in the agent's database (migration m005): written in the same
transaction as what it guards, or not at all, and read back as it was after a restart."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from invsync.agent.errors import StoreError
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.exchange.keyring import Rotation, rotation_row
from invsync.agent.exchange.record_codec import timestamp
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.exchange.trusted import LogCheckpoint, TrustedState, Verified
from invsync.agent.model.findings import PEER_ROLLBACK, make_finding
from invsync.agent.store import agent_store
from invsync.agent.store.agent_store import MIGRATIONS, AgentStore
from invsync.agent.store.db import open_database
from tests.exchange_rig import PAIRING, SERVER, Keys
from tests.trusted_helpers import OWN, make_trust, receipt

T0 = datetime(2021, 3, 1, tzinfo=UTC)
T1 = datetime(2021, 3, 2, tzinfo=UTC)
PEER = Verified(2, "ab" * 32)


def _pending(store: AgentStore, version: int = 1) -> None:
    args = (PAIRING, version, OWN, SNAPSHOT_PAYLOAD_TYPE, [("k", b"s")], T0, T1)
    store.record_sent_snapshot(*args, pending=True)


def _rotation(keys: Keys) -> Rotation:
    return Rotation("jprs", PAIRING, 2, keys.stranger.public, (keys.jprs.public,))


def _failing_state_save(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last write of a transaction fails, as a full disk would make it."""

    def fail(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AgentStore, "_save_state", fail)


def _receipts(store: AgentStore) -> int:
    return int(store.db.execute("SELECT count(*) FROM receipts").fetchone()[0])


def test_a_receipt_marks_its_snapshot_sent_and_the_state_survives_a_restart(
    tmp_path: Path, keys: Keys
) -> None:
    trust = make_trust(keys)
    trust.update_receipt(receipt(keys.server), version=1, payload=OWN)
    with AgentStore(tmp_path / "agent.db") as store:
        _pending(store)
        store.record_receipt(PAIRING, 1, trust.state, T0)
        assert store.pending_snapshot(PAIRING) is None
        sent = store.latest_sent_snapshot(PAIRING)
        assert sent is not None and sent.version == 1
    with AgentStore(tmp_path / "agent.db", create=False) as reopened:
        assert reopened.trusted_state(PAIRING) == trust.state
        # The log's origin is the agent's, not the pairing's: every pairing sees it.
        assert reopened.trusted_state("other-pairing") == TrustedState(origin=SERVER)


def test_a_receipt_is_kept_byte_for_byte_and_the_first_one_of_a_version_stays(
    tmp_path: Path, keys: Keys
) -> None:
    first = make_trust(keys)
    env = receipt(keys.server)
    first.update_receipt(env, version=1, payload=OWN)
    with AgentStore(tmp_path / "agent.db") as store:
        _pending(store)
        store.record_receipt(PAIRING, 1, first.state, T0)
        again = make_trust(keys)
        later = receipt(keys.server, accepted_at=timestamp(T1))
        again.update_receipt(later, version=1, payload=OWN)
        store.record_receipt(PAIRING, 1, again.state, T1)
        assert store.trusted_state(PAIRING).receipts == {1: env}
        assert _receipts(store) == 1


def test_a_receipt_whose_state_cannot_be_saved_leaves_the_snapshot_pending(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    trust = make_trust(keys)
    trust.update_receipt(receipt(keys.server), version=1, payload=OWN)
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        _pending(store)
        _failing_state_save(monkeypatch)
        message = f"{path}: cannot record the receipt {PAIRING} v1: database or disk is full"
        with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
            store.record_receipt(PAIRING, 1, trust.state, T0)
        monkeypatch.undo()
        pending = store.pending_snapshot(PAIRING)
        assert pending is not None and pending.version == 1
        assert store.latest_sent_snapshot(PAIRING) is None
        assert _receipts(store) == 0
        assert store.trusted_state(PAIRING) == TrustedState()


def test_a_state_without_the_receipt_is_a_callers_bug(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        _pending(store)
        with pytest.raises(ValueError, match=r"^the trusted state holds no receipt for version 1$"):
            store.record_receipt(PAIRING, 1, TrustedState(), T0)
        assert store.pending_snapshot(PAIRING) is not None


def test_the_peer_version_is_saved_with_its_rotation_and_survives_a_restart(
    tmp_path: Path, keys: Keys
) -> None:
    state = TrustedState(peer=PEER)
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_peer(PAIRING, state, _rotation(keys), T0)
    with AgentStore(tmp_path / "agent.db", create=False) as reopened:
        assert reopened.trusted_state(PAIRING) == state
        assert reopened.rotations("jprs") == [_rotation(keys)]


def test_the_peer_version_is_not_saved_without_its_rotation_nor_the_rotation_without_it(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        _failing_state_save(monkeypatch)
        message = (
            f"{path}: cannot record the peer's snapshot of {PAIRING}: database or disk is full"
        )
        with pytest.raises(StoreError, match=f"^{re.escape(message)}$"):
            store.record_peer(PAIRING, TrustedState(peer=PEER), _rotation(keys), T0)
        monkeypatch.undo()
        assert store.rotations("jprs") == []
        assert store.trusted_state(PAIRING) == TrustedState()

        def broken_row(rotation: Rotation, recorded_at: str) -> dict[str, object]:
            return {**rotation_row(rotation, recorded_at), "new_key": None}

        monkeypatch.setattr(agent_store, "rotation_row", broken_row)
        with pytest.raises(StoreError, match="NOT NULL constraint failed"):
            store.record_peer(PAIRING, TrustedState(peer=PEER), _rotation(keys), T0)
        assert store.trusted_state(PAIRING) == TrustedState()


def test_the_checkpoint_and_the_refusals_survive_a_restart(tmp_path: Path) -> None:
    checkpoint = LogCheckpoint(7, b"\x07" * 32, b"example.org/log\n7\nBwc=\n\n- sig\n")
    finding = make_finding(PEER_ROLLBACK, sha256="", subject="", party="", message="rolled back")
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_peer(PAIRING, TrustedState(peer=PEER), None, T0)
        store.record_checkpoint(PAIRING, TrustedState(peer=PEER, checkpoint=checkpoint), T0)
        store.record_refusal(PAIRING, "peer-rollback", finding, T1)
    with AgentStore(tmp_path / "agent.db", create=False) as reopened:
        assert reopened.trusted_state(PAIRING) == TrustedState(peer=PEER, checkpoint=checkpoint)
        (refusal,) = reopened.refusals(PAIRING)
        assert (refusal.rule, refusal.finding, refusal.refused_at) == ("peer-rollback", finding, T1)
        assert reopened.refusals("other-pairing") == []


def test_a_database_from_before_the_trusted_state_opens_with_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    open_database(path, MIGRATIONS[:4]).close()
    with AgentStore(path, create=False) as store:
        assert store.trusted_state(PAIRING) == TrustedState()
        names = [row[0] for row in store.db.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names == [migration.__name__ for migration in MIGRATIONS]


def test_a_chain_reset_read_for_another_pairing_waits_in_the_database_until_applied(
    tmp_path: Path, keys: Keys
) -> None:
    """The log is one for all pairings: a reset one pairing's check reads is kept, with the
    checkpoint that moved past it, until its own pairing's check applies it; that check also
    removes the key rotations the reset set aside."""
    other = ChainReset(SERVER, "jprs", "secom-nii", 1, (2,), "INC-42", T0)
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_rotation(_rotation(keys), T0)  # jprs's rotation at version 2 of PAIRING
        store.record_checkpoint(PAIRING, TrustedState(), T0, deferred=[other])
    with AgentStore(tmp_path / "agent.db", create=False) as reopened:
        assert reopened.pending_chain_resets("secom-nii") == [other]
        assert reopened.pending_chain_resets(PAIRING) == []
        reset = ChainReset(SERVER, "jprs", PAIRING, 1, (2,), "INC-42", T0)
        reopened.record_checkpoint("secom-nii", TrustedState(), T1)
        reopened.record_checkpoint(PAIRING, TrustedState(), T1, peer_resets=[reset])
        assert reopened.pending_chain_resets("secom-nii") == []
        assert reopened.rotations("jprs") == []
