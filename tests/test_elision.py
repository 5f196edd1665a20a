"""Payloads cut out of log entries whose reader holds them (agent/exchange/elision.py):
what is put back is the entry byte for byte, and a cut the reader cannot undo, or one a server
got wrong, never passes for an entry."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange import elision, keys, tlog
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.log_entry import log_entry
from invsync.agent.exchange.logrange import BadLogRange, LogRange
from invsync.agent.kept import Kept
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.v1 import invsync_pb2 as pb

BODY = json.dumps({"findings": [{"code": "missing-at-subordinate"}] * 50}).encode()
RID = hashlib.sha256(BODY).hexdigest()
LIMIT = 1 << 20


def _signed_entry(
    body: bytes = BODY, kind: pb.LogEntryKind.ValueType = pb.LOG_ENTRY_KIND_REPORT_SIGNATURE
) -> bytes:
    key = keys.generate()
    env = Envelope(REPORT_PAYLOAD_TYPE, body, (Sig(key.keyid, b"\x01" * 64),))
    entry = log_entry(
        kind,
        env,
        pairing="secom-jprs",
        party="jprs",
        report_id=hashlib.sha256(body).hexdigest(),
    )
    return entry.SerializeToString()


def _held(report_id: str) -> bytes | None:
    return BODY if report_id == RID else None


def test_a_co_signature_entry_comes_without_the_body_and_is_put_back_byte_for_byte() -> None:
    leaf = _signed_entry()
    shorter, cut = elision.cut(3, leaf, {RID})
    assert cut is not None and (cut.index, cut.payload_sha256) == (3, RID)
    assert len(leaf) - len(shorter) == len(base64.b64encode(BODY))
    entries = [b"", b"", b"", shorter]
    assert elision.put_back(entries, [cut], _held, LIMIT)
    assert entries[3] == leaf


@pytest.mark.parametrize(
    "known",
    [set(), {"0" * 64}],
    ids=["nothing held", "another report held"],
)
def test_an_entry_whose_body_the_reader_does_not_hold_comes_whole(known: set[str]) -> None:
    leaf = _signed_entry()
    assert elision.cut(0, leaf, known) == (leaf, None)


def test_a_snapshot_entry_the_reader_pushed_comes_without_its_payload_too() -> None:
    snapshot = _signed_entry(kind=pb.LOG_ENTRY_KIND_SNAPSHOT)
    shorter, cut = elision.cut(0, snapshot, {RID})
    assert cut is not None and cut.payload_sha256 == RID
    entries = [shorter]
    assert elision.put_back(entries, [cut], _held, LIMIT) and entries == [snapshot]


def test_entries_without_a_held_payload_come_whole() -> None:
    reset = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_CHAIN_RESET, party="jprs", pairing="secom-jprs")
    leaf = reset.SerializeToString()
    assert elision.cut(0, leaf, {RID}) == (leaf, None)  # no envelope
    assert elision.cut(0, b"\xff\x00not protobuf", {RID}) == (b"\xff\x00not protobuf", None)


def test_a_body_the_reader_no_longer_holds_means_asking_for_the_entries_whole() -> None:
    shorter, cut = elision.cut(0, _signed_entry(), {RID})
    assert cut is not None
    assert not elision.put_back([shorter], [cut], lambda report_id: None, LIMIT)
    assert not elision.put_back(
        [shorter], [pb.ElidedPayload(index=5, payload_sha256=RID)], _held, LIMIT
    )
    assert not elision.put_back([b""], [cut], _held, LIMIT)  # a withheld entry has nothing to fill


def test_a_cut_a_server_got_wrong_fails_the_leaf_hash() -> None:
    leaf = _signed_entry()
    shorter, cut = elision.cut(0, leaf, {RID})
    assert cut is not None
    wrong = pb.ElidedPayload(index=0, offset=cut.offset + 1, payload_sha256=RID)
    entries = [shorter]
    assert elision.put_back(entries, [wrong], _held, LIMIT)  # it fits somewhere: the hash decides
    served = LogRange(7, (tlog.leaf_hash(leaf),), tuple(entries))
    with pytest.raises(BadLogRange, match=r"^log entry 7: its bytes do not hash to its leaf hash"):
        served.check()


@given(st.binary(max_size=300), st.integers(0, 400), st.text(max_size=70))
def test_put_back_never_raises_on_what_a_server_sends(
    entry: bytes, offset: int, report_id: str
) -> None:
    entries = [entry]
    cut = pb.ElidedPayload(index=0, offset=offset, payload_sha256=report_id)
    result = elision.put_back(entries, [cut], _held, LIMIT)
    assert result is (report_id == RID and bool(entry) and offset <= len(entry))


def test_a_server_cannot_make_the_reader_copy_payloads_without_end() -> None:
    shorter, cut = elision.cut(0, _signed_entry(), {RID})
    assert cut is not None
    second = pb.ElidedPayload(index=1, offset=0, payload_sha256=RID)
    assert elision.put_back([shorter, b"x"], [cut, second], _held, LIMIT)  # one per entry
    assert not elision.put_back([shorter] * 2, [cut] * 500, _held, LIMIT)  # one entry, again
    assert not elision.put_back([shorter, b"x"], [second, cut], _held, LIMIT)  # out of order
    assert not elision.put_back([shorter, b"x"], [cut, second], _held, len(BODY) + 1)


@given(st.binary(max_size=400))
def test_cut_never_raises_on_a_stored_leaf(leaf: bytes) -> None:
    shorter, cut = elision.cut(0, leaf, {RID})
    assert (shorter == leaf) is (cut is None)


def test_an_entry_is_read_once_by_its_leaf_hash_and_cut_alike_for_every_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[bytes] = []
    real = elision._payload_in

    def counted(leaf: bytes) -> tuple[str, int, int]:
        reads.append(leaf)
        return real(leaf)

    monkeypatch.setattr(elision, "_payload_in", counted)
    found: Kept[bytes, tuple[str, int, int]] = Kept()
    monkeypatch.setattr(elision, "_FOUND", found)
    leaf = _signed_entry()
    leaf_hash = tlog.leaf_hash(leaf)
    first = elision.cut(0, leaf, {RID}, leaf_hash)
    assert elision.cut(0, leaf, {"0" * 64}, leaf_hash) == (leaf, None)  # another reader
    assert elision.cut(0, leaf, {RID}, leaf_hash) == first == elision.cut(0, leaf, {RID})
    assert reads == [leaf, leaf]  # the last cut, given no hash, read the entry again
    other = _signed_entry(b'{"findings": []}')
    assert elision.cut(1, other, {RID}, tlog.leaf_hash(other)) == (other, None)
    assert len(reads) == 3


def test_an_entry_without_a_payload_is_never_cut_whatever_the_reader_names() -> None:
    """A reader naming "" as held (a hostile member) gets the entry whole, not a server error."""
    leaf = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_CHAIN_RESET, party="secom").SerializeToString()
    for _ in range(2):  # found, then known by its leaf hash
        assert elision.cut(0, leaf, {""}, tlog.leaf_hash(leaf)) == (leaf, None)
    signed = _signed_entry()
    assert elision.cut(0, signed, {""}) == (signed, None)
