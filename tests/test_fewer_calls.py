"""Fewer calls per cycle (issue 13): a long poll for a report is answered when the report it
waits for is stored or signed, or, when its time is up, with the latest report as it stands;
the latest checkpoint comes with the consistency proof from the one the caller holds."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import acceptance, tlog
from invsync.agent.exchange.checkpoint import claimed_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.served_log import ServedLog
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, parse_report_body
from invsync.server import exchange
from invsync.server.report_news import MAX_WAIT_SECONDS, ReportWait
from invsync.server.storage import LogBudget, StoredReport
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import PAIRING, Rig, payload


@pytest.fixture
def secom_v1(rig: Rig, records: list[CertRecord]) -> bytes:
    data = payload(records, "secom")
    rig.push(sign_snapshot(data, rig.keys.secom), "secom")
    return data


def waiting(call: Callable[[], StoredReport]) -> tuple[threading.Thread, list[StoredReport]]:
    answers: list[StoredReport] = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    return thread, answers


def sign(rig: Rig, party: str, stored: StoredReport) -> None:
    key = rig.keys.of(party)
    sig = Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)))
    rig.exchange.add_signature(party, PAIRING, stored.report_id, sig)


def test_a_waiting_call_is_answered_when_the_report_naming_the_snapshot_is_made(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    jprs = payload(records)
    naming = hashlib.sha256(jprs).hexdigest()
    wait = ReportWait("jprs", naming, "", 15)
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    assert answers == []  # the latest report names no snapshot of jprs yet: still waiting
    started = time.monotonic()
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    thread.join(10)
    assert time.monotonic() - started < 5
    body = parse_report_body(answers[0].envelope.payload)
    assert body.subordinate.digest == naming


def test_a_call_past_a_signed_report_is_answered_once_the_peer_signed_it(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    latest = rig.store.report(PAIRING)
    assert latest is not None
    sign(rig, "jprs", latest)
    wait = ReportWait("jprs", hashlib.sha256(jprs).hexdigest(), latest.report_id, 15)
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    assert answers == []  # secom has not signed: still waiting
    sign(rig, "secom", latest)
    thread.join(10)
    assert answers[0].report_id == latest.report_id
    assert len(answers[0].envelope.signatures) == 3


def _superseded(rig: Rig, records: list[CertRecord], secom_v1: bytes) -> tuple[str, StoredReport]:
    """jprs pushed and has its report; then secom pushed v2, whose report is not made yet (the
    report worker has not got to it): the latest report compares secom's old snapshot."""
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    first = rig.store.report(PAIRING)
    assert first is not None
    rig.exchange.reconcile = lambda pairing: None  # the report is left to the test
    previous = hashlib.sha256(secom_v1).digest()
    secom_v2 = payload(records[:-1], "secom", version=2, previous_digest=previous)
    rig.push(sign_snapshot(secom_v2, rig.keys.secom), "secom")
    assert rig.exchange.reports.stale(PAIRING)
    return hashlib.sha256(jprs).hexdigest(), first


def test_a_report_a_newer_push_superseded_is_not_answered_until_its_successor_is_made(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    naming, first = _superseded(rig, records, secom_v1)
    wait = ReportWait("jprs", naming, "", 15)
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    assert answers == []  # the report names jprs's snapshot, but secom's v1: still waiting
    made = rig.exchange.reports.make_if_stale(PAIRING)
    thread.join(10)
    assert answers[0].report_id == made != first.report_id
    assert parse_report_body(answers[0].envelope.payload).root.version == 2


def test_a_superseded_report_is_answered_as_it_stands_when_the_time_is_up(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    naming, first = _superseded(rig, records, secom_v1)
    started = time.monotonic()
    stored = rig.exchange.report("jprs", PAIRING, "", ReportWait("jprs", naming, "", 1))
    assert time.monotonic() - started >= 0.9
    assert stored.report_id == first.report_id


@contextmanager
def _held_push(
    rig: Rig, env: Envelope, party: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[threading.Event]:
    """A push by `party` under way: its signed header verified, its acceptance waits for the
    event yielded (set on the way out too, so that a failing test leaves no push behind)."""
    named, go = threading.Event(), threading.Event()
    accept = acceptance.accept

    def held(env: Envelope, *, last: Any, **kwargs: Any) -> acceptance.Accepted:
        def held_last(party: str, pairing: str) -> acceptance.LastAccepted | None:
            found: acceptance.LastAccepted | None = last(party, pairing)
            named.set()
            go.wait(10)
            return found

        return accept(env, last=held_last, **kwargs)

    monkeypatch.setattr(exchange, "accept", held)

    def push() -> None:
        with suppress(InvsyncError):  # a refused push is what one test wants
            rig.push(env, party)

    thread = threading.Thread(target=push)
    thread.start()
    try:
        assert named.wait(5)
        yield go
    finally:
        go.set()
        thread.join(10)


def _jprs_reported(rig: Rig, records: list[CertRecord]) -> tuple[str, StoredReport]:
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    first = rig.store.report(PAIRING)
    assert first is not None
    return hashlib.sha256(jprs).hexdigest(), first


def test_a_report_is_not_answered_while_the_peer_pushes_a_newer_snapshot(
    rig: Rig, records: list[CertRecord], secom_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both agents push at about the same time: the report on jprs's push is made while
    # secom's is still arriving. jprs is answered the one on both new snapshots instead.
    naming, first = _jprs_reported(rig, records)
    previous = hashlib.sha256(secom_v1).digest()
    secom_v2 = payload(records[:-1], "secom", version=2, previous_digest=previous)
    with _held_push(rig, sign_snapshot(secom_v2, rig.keys.secom), "secom", monkeypatch) as go:
        wait = ReportWait("jprs", naming, "", 15)
        thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
        time.sleep(0.3)
        assert answers == []  # the report is on both latest snapshots, but secom is pushing
        go.set()
    thread.join(10)
    assert answers[0].report_id != first.report_id
    assert parse_report_body(answers[0].envelope.payload).root.version == 2


def test_a_waiting_call_is_answered_at_once_when_the_peer_s_push_is_refused(
    rig: Rig, records: list[CertRecord], secom_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    naming, first = _jprs_reported(rig, records)
    replayed = payload(records[:-1], "secom")  # version 1 again, other content: refused
    with _held_push(rig, sign_snapshot(replayed, rig.keys.secom), "secom", monkeypatch) as go:
        wait = ReportWait("jprs", naming, "", 15)
        thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
        time.sleep(0.3)
        assert answers == []
        started = time.monotonic()
        go.set()
    thread.join(10)
    assert time.monotonic() - started < 5  # woken by the refusal, not by the time limit
    assert answers[0].report_id == first.report_id
    assert rig.store.last_accepted("secom", PAIRING).version == 1  # type: ignore[union-attr]


def test_a_push_of_another_pairing_holds_no_wait(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    naming, first = _jprs_reported(rig, records)
    with rig.exchange.news.push_under_way() as under_way:
        under_way("secom", "secom-other")  # secom, pushing for another of its pairings
        assert rig.exchange.news.pushing("secom", "secom-other")
        wait = ReportWait("jprs", naming, "", 15)
        started = time.monotonic()
        assert rig.exchange.report("jprs", PAIRING, "", wait).report_id == first.report_id
        assert time.monotonic() - started < 1
    assert not rig.exchange.news.pushing("secom", "secom-other")


def test_when_the_time_is_up_the_latest_report_is_answered_as_it_stands(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    wait = ReportWait("jprs", "ab" * 32, "", 1)
    started = time.monotonic()
    stored = rig.exchange.report("jprs", PAIRING, "", wait)
    assert time.monotonic() - started >= 0.9
    assert stored.report_id == rig.store.report(PAIRING).report_id  # type: ignore[union-attr]


def test_a_report_id_is_answered_without_waiting(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    first = rig.store.report(PAIRING)
    assert first is not None
    wait = ReportWait("jprs", "ab" * 32, "", MAX_WAIT_SECONDS)
    started = time.monotonic()
    assert rig.exchange.report("jprs", PAIRING, first.report_id, wait) == first
    assert time.monotonic() - started < 1


def test_what_a_wait_is_met_by(rig: Rig, records: list[CertRecord], secom_v1: bytes) -> None:
    stored = rig.store.report(PAIRING)
    assert stored is not None
    digest = hashlib.sha256(secom_v1).hexdigest()
    assert ReportWait("secom", digest, "", 1).met_by(stored)
    assert not ReportWait("secom", "00" * 32, "", 1).met_by(stored)
    assert ReportWait("secom", digest, "another report", 1).met_by(stored)
    assert not ReportWait("secom", digest, stored.report_id, 1).met_by(stored)  # not signed


def test_the_latest_checkpoint_comes_with_what_a_log_watch_asks_next(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    """One call instead of four in the log watch (issue 13): GetCheckpoint with proof_from,
    inclusion_of and entries; each proof verifies like one asked for alone."""
    rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    held = claimed_checkpoint(rig.store.checkpoint(2) or b"")
    assert held is not None and held.size == 2
    update = rig.exchange.log_update("jprs", 2, [2, 0, 99], True)
    latest = claimed_checkpoint(update.note)
    assert latest is not None and update.size == latest.size == rig.store.log_size() > 2
    tlog.verify_consistency(2, update.size, held.root, latest.root, update.consistency)
    leaves = rig.store.log_entries(0, update.size, 1 << 30)
    assert [index for index, _ in update.inclusion] == [2, 0]  # 99 is beyond the tree
    for index, proof in update.inclusion:
        tlog.verify_inclusion(tlog.leaf_hash(leaves[index]), index, update.size, proof, latest.root)
    assert update.entries is not None and update.entries.start == 2
    assert update.entries.leaf_hashes == tuple(tlog.leaf_hash(leaf) for leaf in leaves[2:])
    # jprs's own entries are shown (its snapshot and receipt), the rest only hashed: the
    # report entries and nothing of secom's
    kinds = [pb.LogEntry.FromString(leaf) for leaf in update.entries.entries if leaf]
    assert [(e.kind, e.party) for e in kinds] == [
        (pb.LOG_ENTRY_KIND_SNAPSHOT, "jprs"),
        (pb.LOG_ENTRY_KIND_RECEIPT, "jprs"),
    ]
    assert len(update.entries) == len(leaves) - 2 > len(kinds)
    assert rig.exchange.log_update("jprs", update.size, [], False).consistency == []
    assert rig.exchange.log_update("jprs", update.size + 5, [], True).entries is None


def test_a_large_entry_withheld_from_the_caller_does_not_cut_its_answer_short(
    rig: Rig, records: list[CertRecord], secom_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a cold cycle, a watch reads past the peer's full snapshot: withheld, it costs its
    hash, not its bytes, so jprs's own entries after it come in the same answer."""
    rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    leaves = rig.store.log_entries(0, rig.store.log_size(), 1 << 30)
    secoms = len(leaves[0])  # secom's full snapshot, withheld from jprs
    whole = rig.exchange.log_update("jprs", 0, [], True).entries
    assert whole is not None and whole.entries[0] == b""
    served = sum(len(leaf) or 32 for leaf in whole.entries)
    assert sum(map(len, leaves)) > served + 64  # counting every byte read, it would stop early
    monkeypatch.setattr(exchange, "LOG_BUDGET", LogBudget(served=served + 64, read=1 << 30))
    update = rig.exchange.log_update("jprs", 0, [], True)
    assert update.entries is not None and len(update.entries) == len(leaves)
    assert update.entries.entries[0] == b"" and update.entries.leaf_hashes[0] == tlog.leaf_hash(
        leaves[0]
    )
    # What is read to learn whose an entry is has its own bound: one entry, then stop.
    monkeypatch.setattr(exchange, "LOG_BUDGET", LogBudget(served=1 << 30, read=secoms))
    assert len(rig.exchange.log_update("jprs", 0, [], True).entries or ()) == 1


def test_an_entry_past_the_read_budget_is_not_read_but_the_first_always_is(
    rig: Rig, records: list[CertRecord], secom_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaves = rig.store.log_entries(0, rig.store.log_size(), 1 << 30)
    read: list[int] = []
    real = rig.store._leaf

    def counted(index: int) -> bytes:
        read.append(index)
        return real(index)

    monkeypatch.setattr(rig.store, "_leaf", counted)
    budget = LogBudget(served=1 << 30, read=len(leaves[0]) + len(leaves[1]))
    hashes, entries = rig.store.shown_entries(0, len(leaves), budget, lambda leaf: True)
    assert read == [0, 1] and entries == leaves[:2]  # the third would pass the budget: unread
    assert hashes == [tlog.leaf_hash(leaf) for leaf in leaves[:2]]
    read.clear()
    hashes, entries = rig.store.shown_entries(0, len(leaves), LogBudget(1, 1), lambda leaf: False)
    assert read == [0] and entries == [b""] and len(hashes) == 1  # one, however small the budget


def test_the_client_answers_later_log_calls_from_what_the_checkpoint_carried(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    update = rig.exchange.log_update("jprs", 2, [3], True)
    answer = pb.SignedCheckpoint(
        note=update.note,
        tree_size=update.size,
        consistency=update.consistency,
        inclusion=[pb.LogProof(hashes=p) for _, p in update.inclusion],
    )
    assert update.entries is not None
    answer.entries.CopyFrom(update.entries.to_pb())
    served = ServedLog.of(answer, 2, [3])
    assert served.consistency == {(2, update.size): update.consistency}
    assert served.inclusion == {(3, update.size): update.inclusion[0][1]}
    part = served.log_range(3, 5)
    assert part is not None and (part.start, part.entries) == (3, update.entries.entries[1:3])
    assert served.log_range(1, 5) is None  # starts before what was served: asked for
    assert ServedLog.of(pb.SignedCheckpoint(note=update.note), 0, []) == ServedLog()


def test_a_party_holds_at_most_two_waiting_calls_and_a_stop_answers_them_all(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    """One party cannot tie up the server's call slots with waits, and a stopping server
    answers the waiting calls at once instead of at their deadlines."""
    wait = ReportWait("jprs", "ab" * 32, "", MAX_WAIT_SECONDS)
    calls = [waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait)) for _ in range(2)]
    time.sleep(0.3)
    assert all(answers == [] for _, answers in calls)  # both wait
    started = time.monotonic()
    third = rig.exchange.report("jprs", PAIRING, "", wait)  # over the cap: answered at once
    assert time.monotonic() - started < 1
    other = ReportWait("secom", "ab" * 32, "", MAX_WAIT_SECONDS)
    thread, answers = waiting(lambda: rig.exchange.report("secom", PAIRING, "", other))
    time.sleep(0.3)
    assert answers == []  # another party still gets its own waits
    started = time.monotonic()
    rig.exchange.news.close()
    for call, _ in [*calls, (thread, answers)]:
        call.join(5)
    assert time.monotonic() - started < 2
    assert {a[0].report_id for _, a in calls} == {answers[0].report_id, third.report_id}


def test_a_caller_that_went_away_stops_waiting(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    gone = threading.Event()
    wait = ReportWait("jprs", "ab" * 32, "", MAX_WAIT_SECONDS, alive=lambda: not gone.is_set())
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    gone.set()
    rig.exchange.news.changed()  # what gRPC's callback on the cancelled call does
    thread.join(5)
    assert len(answers) == 1


def test_a_receipt_comes_with_the_proof_from_the_log_size_its_pusher_holds(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    """The receipt checks against the agent's log without another call (pb.Receipt)."""
    held = claimed_checkpoint(rig.store.checkpoint(2) or b"")
    assert held is not None
    receipt = pb.Envelope.FromString(
        rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    )
    body = pb.ReceiptBody.FromString(receipt.payload)
    named = claimed_checkpoint(body.checkpoint)
    assert named is not None and named.size > 2
    first, second, proof = rig.exchange.receipt_proof("jprs", receipt, 2)
    assert (first, second) == (2, named.size)
    tlog.verify_consistency(2, named.size, held.root, named.root, proof)
    assert rig.exchange.receipt_proof("jprs", receipt, named.size) == (0, 0, [])  # same tree
    assert rig.exchange.receipt_proof("jprs", receipt, 10**9) == (0, 0, [])  # no such tree
