"""The review's findings on the log, each pinned: a receipt's checkpoint is opened and held to
the one log (agent/exchange/trusted.py); a missing checkpoint is a finding, not "no log"; every
receipt of ours and every entry signed as us is checked (agent/daemon/log_watch.py); the log's
origin and checkpoint are one per agent (agent/store/agent_store.py); a restore adopts nothing
older than its trigger named (agent/daemon/restore.py); and memory follows the database only
after a commit."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from invsync.agent.daemon.restore import refused_floor
from invsync.agent.errors import StoreError, TransportError
from invsync.agent.exchange import envelope
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE, decode_receipt
from invsync.agent.exchange.rejections import LogInconsistentError
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.exchange.trusted import LogCheckpoint, SharedLog, TrustedState
from invsync.agent.model.record import CertRecord
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, Rig, payload
from tests.log_watch_helpers import AgentSide, agent_side, restorer
from tests.trusted_helpers import OWN, make_trust, receipt

PREFIX = f"refused [log-inconsistent]: pairing {PAIRING!r}: "
WHY = "the server refused our push"


def _refused(call: Any, detail: str) -> None:
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(PREFIX + detail)}$"):
        call()


# --- 1. a receipt's checkpoint is opened, under the one origin, and held to the one log --------


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"checkpoint": b""}, "the receipt for secom's version 1 carries no log checkpoint"),
        (
            {"checkpoint": b"garbage"},
            "the receipt for secom's version 1: checkpoint: not a signed note (no blank line "
            "after the body)",
        ),
        (
            {"server": "other"},
            f"the receipt for secom's version 1 names server 'other', the log watched here is "
            f"{SERVER!r}",
        ),
        (
            {"log_index": 12345},
            "the receipt for secom's version 1: receipt of secom version 1: log entry 12345 is "
            "not in its checkpoint's tree of size 1",
        ),
    ],
)
def test_a_receipt_whose_checkpoint_does_not_open_is_refused(
    keys: Keys, changes: dict[str, Any], detail: str
) -> None:
    trust = make_trust(keys)
    trust = type(trust)(
        party="secom",
        pairing=trust.pairing,
        server_keys={keys.server.keyid: keys.server.public},
        peer=trust._peer,
        reports=trust._reports,
        shared=SharedLog(SERVER),
    )
    _refused(
        lambda: trust.update_receipt(receipt(keys.server, **changes), version=1, payload=OWN),
        detail,
    )
    assert trust.state == TrustedState(origin=SERVER)


def test_a_receipt_of_another_log_than_the_held_checkpoint_is_refused(keys: Keys) -> None:
    held = LogCheckpoint(1, b"\x02" * 32, b"note")
    trust = make_trust(keys, TrustedState(checkpoint=held, origin=SERVER))
    env = receipt(keys.server)
    assert trust.receipt_proof_sizes(env, version=1, payload=OWN) is None  # same size
    detail = (
        "the receipt for secom's version 1 carries a checkpoint of size 1 not consistent with "
        "the one of size 1 verified here (consistency 1 -> 1: two roots for one tree size: the "
        "log forked)"
    )
    _refused(lambda: trust.update_receipt(env, version=1, payload=OWN), detail)
    assert trust.state.receipts == {}


def test_the_first_receipts_server_becomes_the_agents_log_origin_once(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    trust = make_trust(keys)
    with caplog.at_level(logging.WARNING, "invsync.agent"):
        trust.update_receipt(receipt(keys.server), version=1, payload=OWN)
    assert trust.state.origin == SERVER
    assert (
        f"party=secom adopting {SERVER!r}, the first verified receipt's server, as the log's "
        "origin: set server.name in the configuration to pin it"
    ) in caplog.messages
    with AgentStore(tmp_path / "a.db") as store:
        store.record_checkpoint(PAIRING, trust.state, NOW)
        assert store.trusted_state("another-pairing").origin == SERVER


# --- 1 and 3. the watch: no "no log", every receipt, every entry signed as us -----------------


def test_a_receipt_without_a_checkpoint_once_one_is_held_is_a_finding(
    tmp_path: Path, rig: Rig, keys: Keys, secom: AgentSide, records: list[CertRecord]
) -> None:
    secom.push(rig, records, 1)
    secom.watch.check(secom.client, secom.trust)
    bare = pb.ReceiptBody(party="secom", pairing=PAIRING, version=2, server=SERVER)
    env = envelope.sign(RECEIPT_PAYLOAD_TYPE, bare.SerializeToString(), [keys.server])
    state = secom.trust.state
    forged = TrustedState(state.own, state.peer, {**state.receipts, 2: env}, state.checkpoint)
    secom.store.record_receipt(PAIRING, 2, forged, NOW)  # as a store from before would hold
    again = agent_side(tmp_path / "secom.db", rig, keys, "secom")
    _refused(
        lambda: again.watch.check(again.client, again.trust),
        "the receipt for secom's version 2 carries no log checkpoint",
    )
    again.store.close()


def test_every_receipt_pushed_between_two_watches_is_checked_once(
    rig: Rig, secom: AgentSide, records: list[CertRecord]
) -> None:
    secom.push(rig, records, 1)
    secom.watch.check(secom.client, secom.trust)
    secom.push(rig, records[1:], 2)
    secom.push(rig, records[2:], 3)
    assert secom.store.unchecked_receipts(PAIRING) == [2, 3]
    real = secom.client.rig.exchange.inclusion_proof
    at = decode_receipt(secom.trust.state.receipts[2]).log_index
    size = latest_size(secom)

    def lie_about_2(index: int, size: int) -> list[bytes]:
        proof = real("secom", index, size)
        return [bytes(32)] * len(proof) if index == at else proof

    secom.client.tampered["inclusion_proof"] = lie_about_2
    _refused(
        lambda: secom.watch.check(secom.client, secom.trust),
        f"log entry {at} (the receipt's for secom's version 2): inclusion: entry {at} is not in "
        f"the tree of size {size}",
    )
    secom.client.tampered.clear()
    secom.watch.check(secom.client, secom.trust)
    assert secom.store.unchecked_receipts(PAIRING) == []


def latest_size(side: AgentSide) -> int:
    note = side.client.checkpoint()
    return int(note.split(b"\n")[1])


def test_an_entry_signed_as_us_that_we_did_not_make_is_a_finding(
    rig: Rig, keys: Keys, secom: AgentSide, records: list[CertRecord]
) -> None:
    secom.push(rig, records, 1)
    secom.watch.check(secom.client, secom.trust)
    # Our key, not our agent: a snapshot this database never pushed lands in the log.
    previous = hashlib.sha256(secom.sent[1]).digest()
    data = payload(records[1:], "secom", version=2, previous_digest=previous)
    rig.push(sign_snapshot(data, keys.secom), "secom")
    before = secom.trust.state
    _refused(
        lambda: secom.watch.check(secom.client, secom.trust),
        f"log entry 3 is a SNAPSHOT entry signed as secom (pairing {PAIRING!r}, version 2, "
        "report -) that this agent did not make",
    )
    assert secom.trust.state == before == secom.store.trusted_state(PAIRING)


# --- 4. one log per agent -----------------------------------------------------------------------


def test_the_checkpoint_is_the_agents_shared_by_its_pairings_and_never_shrinks(
    tmp_path: Path,
) -> None:
    big, small = LogCheckpoint(9, b"\x09" * 32, b"nine"), LogCheckpoint(4, b"\x04" * 32, b"four")
    with AgentStore(tmp_path / "a.db") as store:
        store.record_checkpoint("one", TrustedState(checkpoint=big, origin=SERVER), NOW)
        assert store.trusted_state("two").checkpoint == big
        store.record_checkpoint("two", TrustedState(checkpoint=small), NOW)  # a stale copy
        assert store.trusted_state("one").checkpoint == big
        assert store.trusted_state("two").origin == SERVER


def test_pairings_in_memory_share_one_checkpoint(keys: Keys) -> None:
    shared = SharedLog(SERVER)
    one, two = make_trust(keys), make_trust(keys)
    one, two = (
        type(t)(
            party="secom",
            pairing=t.pairing,
            server_keys={keys.server.keyid: keys.server.public},
            peer=t._peer,
            reports=t._reports,
            shared=shared,
        )
        for t in (one, two)
    )
    one.replace_checkpoint(LogCheckpoint(5, b"\x05" * 32, b"five"))
    assert two.state.checkpoint == one.state.checkpoint


# --- 5. memory follows the database, never runs ahead ----------------------------------------


def test_a_failed_write_leaves_the_trusted_state_as_it_was(
    rig: Rig, secom: AgentSide, records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom.push(rig, records, 1)
    before = secom.trust.state

    def fail(*args: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(AgentStore, "_save_state", fail)
    with pytest.raises(
        StoreError, match="cannot record the checkpoint of secom-jprs: database or disk is full"
    ):
        secom.watch.check(secom.client, secom.trust)
    assert secom.trust.state == before  # no checkpoint held in memory either
    with pytest.raises(StoreError, match="cannot record the receipt secom-jprs v2"):
        secom.push(rig, records[1:], 2)
    assert secom.trust.state == before  # the receipt for version 2 is not in memory


# --- 2. a restore adopts nothing older than its trigger named ----------------------------------


@pytest.fixture
def restored(
    tmp_path: Path, rig: Rig, keys: Keys, records: list[CertRecord]
) -> Iterator[AgentSide]:
    """secom pushed versions 1 to 3; its database was backed up after version 1 and restored."""
    current = agent_side(tmp_path / "current.db", rig, keys, "secom")
    current.push(rig, records, 1)
    backup = tmp_path / "backup.db"
    source, target = sqlite3.connect(current.store.path), sqlite3.connect(backup)
    with closing(source), closing(target):
        source.backup(target)
    current.push(rig, records[1:], 2)
    current.push(rig, records[2:], 3)
    current.store.close()
    side = agent_side(backup, rig, keys, "secom")
    yield side
    side.store.close()


def test_a_restore_below_the_version_its_trigger_named_is_a_finding_and_pushes_nothing(
    restored: AgentSide, keys: Keys
) -> None:
    _refused(
        lambda: restorer(restored, keys).restore(restored.client, restored.trust, WHY, 4),
        f"{WHY}, but our latest snapshot the log shows is version 3, not version 4 or later",
    )
    assert (restored.store.latest_sent_snapshot(PAIRING) or pytest.fail()).version == 1
    (refusal,) = restored.store.refusals(PAIRING)
    assert refusal.finding.code == "log-inconsistent"


def test_a_withheld_latest_entry_of_ours_is_a_finding_not_skipped(
    rig: Rig, restored: AgentSide, keys: Keys
) -> None:
    def hide_version_3(start: int, end: int) -> LogRange:
        served = rig.exchange.log_entries("secom", start, end)
        entries = tuple(
            b"" if leaf and pb.LogEntry.FromString(leaf).version == 3 else leaf
            for leaf in served.entries
        )
        return LogRange(served.start, served.leaf_hashes, entries)

    restored.client.tampered["log_range"] = hide_version_3
    _refused(
        lambda: restorer(restored, keys).restore(restored.client, restored.trust, WHY, 3),
        f"{WHY}, but our latest snapshot the log shows is version 2, not version 3 or later "
        "(2 later entries withheld as another pairing's)",
    )
    assert (restored.store.latest_sent_snapshot(PAIRING) or pytest.fail()).version == 1


class _Refusal(TransportError):
    def __init__(self, rule: str) -> None:
        super().__init__("refused")
        self.rule = rule


def test_a_refusal_names_the_least_version_the_server_holds() -> None:
    assert refused_floor(_Refusal("rollback"), 2) == 3  # it holds a later one
    assert refused_floor(_Refusal("equivocation"), 2) == 2  # it holds another one of 2
