"""The agent's log watch (agent/daemon/log_watch.py) against a real in-process exchange: a log
that grows is accepted; a fork, a proof that does not prove, an entry that is not ours and a
checkpoint another key signed are refused with their finding and change nothing; two agents
shown different logs see it in each other's snapshot headers (a split view)."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.rejections import LogInconsistentError, LogSplitViewError
from invsync.agent.exchange.snapshot import decode_payload, sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import PAIRING, SERVER, Keys, Rig, make_rig, payload
from tests.log_watch_helpers import AgentSide, agent_side

PREFIX = f"refused [log-inconsistent]: pairing {PAIRING!r}: "


@pytest.fixture
def watched(rig: Rig, secom: AgentSide, keys: Keys, records: list[CertRecord]) -> AgentSide:
    """secom pushed version 1 and verified the log; then jprs pushed: the log grew."""
    secom.push(rig, records, 1)
    secom.watch.check(secom.client, secom.trust)
    push(rig, keys, "jprs", records)
    return secom


def push(
    rig: Rig,
    keys: Keys,
    party: str,
    records: list[CertRecord],
    version: int = 1,
    after: bytes = b"",
) -> None:
    """`party` pushes `version` (after the payload `after`) to `rig`, outside any AgentSide."""
    previous = hashlib.sha256(after).digest() if after else b""
    data = payload(records, party, version=version, previous_digest=previous)
    rig.push(sign_snapshot(data, keys.of(party)), party)


def latest(rig: Rig, keys: Keys) -> Checkpoint:
    return open_checkpoint(
        rig.exchange.checkpoint("secom", 0), SERVER, {SERVER: keys.server.public}
    )


def test_the_first_check_is_trust_on_first_use_and_a_grown_log_is_accepted(
    rig: Rig,
    secom: AgentSide,
    keys: Keys,
    records: list[CertRecord],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secom.push(rig, records, 1)
    with caplog.at_level(logging.INFO, "invsync.agent"):
        first = secom.watch.check(secom.client, secom.trust)
    assert first == latest(rig, keys) and first.size == rig.store.log_size() == 3
    assert (
        f"party=secom pairing={PAIRING} trusting on first use the log checkpoint of size 3 "
        f"(root {first.root.hex()[:16]}): no earlier checkpoint was verified here"
    ) in caplog.messages
    held = secom.trust.state.checkpoint
    assert held is not None and (held.size, held.root_hash) == (3, first.root)
    assert held.note == rig.exchange.checkpoint("secom", 3)

    push(rig, keys, "jprs", records)  # jprs's snapshot, its receipt and the report
    secom.push(rig, records, 2)
    caplog.clear()
    with caplog.at_level(logging.INFO, "invsync.agent"):
        grown = secom.watch.check(secom.client, secom.trust)
    assert grown == latest(rig, keys) and grown.size == 9
    assert not [m for m in caplog.messages if "trusting on first use" in m]
    assert f"party=secom pairing={PAIRING} verified the log up to checkpoint size=9" in (
        caplog.messages
    )
    # Saved with the state, as a restarted agent reads it.
    assert secom.store.trusted_state(PAIRING) == secom.trust.state
    assert secom.store.refusals(PAIRING) == []


def _forked(rig: Rig, keys: Keys) -> Callable[..., Any]:
    """The checkpoint of the tree secom verified (size 3), signed again over another root."""

    def answer(tree_size: int) -> bytes:
        return sign_checkpoint(Checkpoint(SERVER, 3, b"\x07" * 32), SERVER, keys.server)

    return answer


def _unproven(rig: Rig, keys: Keys) -> Callable[..., Any]:
    def answer(first: int, second: int) -> list[bytes]:
        proof = rig.exchange.consistency_proof("secom", first, second)
        return [bytes(32)] * len(proof)

    return answer


def _jprs_entry(rig: Rig, keys: Keys) -> Callable[..., Any]:
    """Asked for secom's entry 0, the server answers with jprs's snapshot (entry 3)."""

    def answer(start: int, end: int) -> LogRange:
        return rig.exchange.log_entries("secom", 3, 4)

    return answer


def _stranger_signed(rig: Rig, keys: Keys) -> Callable[..., Any]:
    def answer(tree_size: int) -> bytes:
        head = latest(rig, keys)
        return sign_checkpoint(head, SERVER, keys.stranger)

    return answer


# case -> (the call tampered with, what answers it instead, the refusal's detail)
TAMPERED: dict[str, tuple[str, Callable[[Rig, Keys], Callable[..., Any]], str]] = {
    "fork": (
        "checkpoint",
        _forked,
        "the log's checkpoint of size 3 does not extend the one of size 3 verified here "
        "(consistency 3 -> 3: two roots for one tree size: the log forked)",
    ),
    "unproven": (
        "consistency_proof",
        _unproven,
        "the log's checkpoint of size 6 does not extend the one of size 3 verified here "
        "(consistency 3 -> 6: the proof does not lead to the old root)",
    ),
    "not-ours": (
        "log_range",
        _jprs_entry,
        "log entry 0 (the receipt's for secom's version 1) is not that snapshot: it is a "
        f"SNAPSHOT entry of party 'jprs', pairing {PAIRING!r}, version 1",
    ),
    "other-key": (
        "checkpoint",
        _stranger_signed,
        f"the log's latest checkpoint: checkpoint of {SERVER}: no signature by a pinned key "
        "verifies",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_log_is_refused_as_a_finding_and_changes_nothing(
    rig: Rig, keys: Keys, watched: AgentSide, case: str
) -> None:
    call, make, detail = TAMPERED[case]
    before = watched.trust.state
    watched.client.tampered[call] = make(rig, keys)
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(PREFIX + detail)}$"):
        watched.watch.check(watched.client, watched.trust)
    assert watched.trust.state == before
    assert watched.store.trusted_state(PAIRING) == before
    (refusal,) = watched.store.refusals(PAIRING)
    finding = refusal.finding
    assert (refusal.rule, finding.code, finding.party) == (
        "log-inconsistent",
        "log-inconsistent",
        "",
    )
    assert finding.message == f"pairing {PAIRING!r}: {detail}"

    # The server's honest answer is accepted again: the refusal lasted as long as the lie.
    watched.client.tampered.clear()
    again = watched.watch.check(watched.client, watched.trust)
    assert again is not None and again.size == 6


def test_an_inclusion_proof_that_does_not_prove_our_entry_is_refused(
    rig: Rig, watched: AgentSide
) -> None:
    def answer(index: int, size: int) -> list[bytes]:
        return [bytes(32)] * len(rig.exchange.inclusion_proof("secom", index, size))

    watched.client.tampered["inclusion_proof"] = answer
    message = (
        "log entry 0 (the receipt's for secom's version 1): inclusion: entry 0 is not in the "
        "tree of size 6"
    )
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(PREFIX + message)}$"):
        watched.watch.check(watched.client, watched.trust)


def test_an_entry_with_another_envelope_than_the_one_pushed_is_refused(
    rig: Rig, watched: AgentSide
) -> None:
    """The server logged secom's snapshot with a signature it did not carry."""

    def answer(start: int, end: int) -> LogRange:
        served = rig.exchange.log_entries("secom", start, end)
        entry = pb.LogEntry.FromString(served.entries[0])
        entry.envelope = entry.envelope.replace(
            b'"signatures":[', b'"signatures":[{"keyid":"x","sig":""},'
        )
        leaf = entry.SerializeToString()
        return LogRange(start, (tlog.leaf_hash(leaf),), (leaf,))

    watched.client.tampered["log_range"] = answer
    message = (
        "log entry 0 (the receipt's for secom's version 1) holds another envelope than the one "
        "secom pushed"
    )
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(PREFIX + message)}$"):
        watched.watch.check(watched.client, watched.trust)


# A split view: the exchange shows secom one log (rig A) and jprs another (rig B), both signed
# with its key under its name. Each agent's own checks pass; their snapshot headers show it.


@pytest.fixture
def split(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> Iterator[tuple[Rig, AgentSide, Rig, AgentSide]]:
    """Both parties pushed version 1 into both logs; each agent is answered from its own."""
    shown_secom, shown_jprs = make_rig(tmp_path / "a.db", keys), make_rig(tmp_path / "b.db", keys)
    shown_jprs.clock.now += timedelta(seconds=1)  # its receipts differ, and so its log
    secom = agent_side(tmp_path / "secom.db", shown_secom, keys, "secom")
    jprs = agent_side(tmp_path / "jprs.db", shown_jprs, keys, "jprs")
    secom.push(shown_secom, records, 1)
    push(shown_secom, keys, "jprs", records)
    push(shown_jprs, keys, "secom", records)
    jprs.push(shown_jprs, records, 1)
    yield shown_secom, secom, shown_jprs, jprs
    for store in (secom.store, jprs.store, shown_secom.store, shown_jprs.store):
        store.close()


def _header(side: AgentSide, records: list[CertRecord], version: int) -> SnapshotHeader:
    """The header of a snapshot `side` builds: it carries the checkpoint it verified last."""
    held = side.trust.state.checkpoint
    assert held is not None
    data = payload(records, side.party, version=version, log_checkpoint=held.note)
    return decode_payload(data).header


def test_two_agents_shown_logs_of_one_size_with_other_roots_see_a_split_view(
    split: tuple[Rig, AgentSide, Rig, AgentSide], records: list[CertRecord]
) -> None:
    _, secom, _, jprs = split
    mine = secom.watch.check(secom.client, secom.trust)
    theirs = jprs.watch.check(jprs.client, jprs.trust)
    assert mine is not None and theirs is not None
    assert mine.size == theirs.size == 6 and mine.root != theirs.root
    message = (
        f"refused [log-split-view]: pairing {PAIRING!r}: jprs's snapshot version 2 carries a log "
        "checkpoint of size 6 with another root than ours of that size: the exchange showed the "
        "two parties different logs"
    )
    with pytest.raises(LogSplitViewError, match=f"^{re.escape(message)}$") as refused:
        secom.watch.check_peer_view(secom.client, secom.trust, _header(jprs, records, 2))
    assert refused.value.finding is not None and refused.value.finding.code == "log-split-view"
    assert refused.value.finding.message == message.removeprefix("refused [log-split-view]: ")


def test_two_agents_shown_logs_of_other_sizes_that_do_not_extend_each_other_see_it(
    split: tuple[Rig, AgentSide, Rig, AgentSide], keys: Keys, records: list[CertRecord]
) -> None:
    shown_secom, secom, shown_jprs, jprs = split
    secom.watch.check(secom.client, secom.trust)  # size 6 of log A
    jprs.push(shown_jprs, records, 2)  # jprs's version 2 in both logs: both grow to 9
    push(shown_secom, keys, "jprs", records, 2, after=jprs.sent[1])
    jprs.watch.check(jprs.client, jprs.trust)
    message = (
        f"refused [log-split-view]: pairing {PAIRING!r}: jprs's snapshot version 3 carries a log "
        "checkpoint of size 9, ours is of size 6, and they are not of one log (consistency "
        "6 -> 9: the proof does not lead to the new root)"
    )
    with pytest.raises(LogSplitViewError, match=f"^{re.escape(message)}$"):
        secom.watch.check_peer_view(secom.client, secom.trust, _header(jprs, records, 3))


def test_a_peer_shown_the_same_log_passes_smaller_larger_or_equal(
    rig: Rig, watched: AgentSide, records: list[CertRecord]
) -> None:
    held = watched.trust.state.checkpoint
    assert held is not None and held.size == 3
    peer = decode_payload(payload(records)).header
    assert peer.log_checkpoint == b""  # before the peer verified any: nothing to compare
    watched.watch.check_peer_view(watched.client, watched.trust, peer)
    for size in (1, 3, 6):
        note = rig.exchange.checkpoint("jprs", size)
        header = replace(peer, log_checkpoint=note)
        watched.watch.check_peer_view(watched.client, watched.trust, header)  # no error
    assert watched.store.refusals(PAIRING) == []
