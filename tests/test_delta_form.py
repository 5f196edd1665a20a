"""A snapshot's parts joined by hand (agent.exchange.delta.delta_form, issue 13) are protobuf's
own deterministic serialization of SnapshotParts, byte for byte: every payload read is checked
against this form, so a difference would refuse good snapshots or let another encoding pass."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange.delta import (
    accepted_header,
    changes_in,
    delta_form,
    full_form,
    read_parts,
    read_whole,
    rebuild,
    rebuild_parts,
)
from invsync.agent.exchange.rejections import DuplicateRecordError, MalformedSnapshot
from invsync.v1 import invsync_pb2 as pb

# Lengths around the varint boundaries (127/128, 16383/16384) and empty values.
BLOBS = st.one_of(
    st.binary(max_size=200),
    st.integers(120, 140).map(lambda n: b"r" * n),
    st.integers(16380, 16390).map(lambda n: b"x" * n),
)


@given(BLOBS, st.lists(BLOBS, max_size=12), st.lists(BLOBS, max_size=4))
def test_the_joined_form_is_protobufs_serialization(
    header: bytes, records: list[bytes], removed: list[bytes]
) -> None:
    expected = pb.SnapshotParts(header=header, records=records, removed=removed)
    assert delta_form(header, records, removed) == expected.SerializeToString(deterministic=True)
    assert full_form(header, records) == delta_form(header, records, [])


@given(st.text(max_size=40), st.lists(BLOBS, max_size=12))
def test_a_joined_full_form_reads_back_as_its_parts(party: str, records: list[bytes]) -> None:
    header = pb.SnapshotHeader(party=party, version=1).SerializeToString(deterministic=True)
    parts = read_parts(full_form(header, records))
    assert (parts.header_bytes, list(parts.records), list(parts.removed)) == (header, records, [])


def test_a_length_of_three_varint_bytes() -> None:
    record = b"z" * 2_000_000  # 2,000,000 = 0x1E8480 needs 3 varint bytes
    joined = full_form(b"h", [record])
    assert joined[:3] == b"\x0a\x01h"
    assert joined[3:7] == b"\x12\x80\x89\x7a"
    assert joined == pb.SnapshotParts(header=b"h", records=[record]).SerializeToString(
        deterministic=True
    )


@given(
    st.text(max_size=40),
    st.integers(0, 2**63),
    st.booleans(),
    st.lists(BLOBS, max_size=6),
    st.lists(st.binary(min_size=32, max_size=32), max_size=3),
)
def test_an_accepted_payloads_header_reads_alone_as_its_parts_read_it(
    party: str, version: int, is_delta: bool, records: list[bytes], removed: list[bytes]
) -> None:
    header = pb.SnapshotHeader(party=party, version=version, delta=is_delta)
    data = header.SerializeToString(deterministic=True)
    payload = delta_form(data, records, removed if is_delta else [])
    assert accepted_header(payload) == read_parts(payload).header == header


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_a_malformed_snapshot(data: bytes) -> None:
    try:
        header = accepted_header(data)
    except MalformedSnapshot:
        return
    assert isinstance(header, pb.SnapshotHeader)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "payload does not start with its header"),
        (b"\x12\x01r", "payload does not start with its header"),  # a record first
        (b"\x0a\xff", "payload's header length is not a varint"),
        (b"\x0a\x05ab", "payload is shorter than its header's length"),
        (b"\x0a\x01\xff", "payload's header does not parse"),
    ],
)
def test_a_payload_without_a_header_first_is_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedSnapshot, match=message):
        accepted_header(data)


# Records over a few certificates, so that sets share, change and drop some of them.
_DERS = [bytes([i]) * (i + 1) for i in range(6)]
_sets = st.dictionaries(
    st.sampled_from(_DERS), st.sampled_from(["", "secom", "jprs"]), max_size=len(_DERS)
)


def _entries(records: dict[bytes, str]) -> list[tuple[bytes, bytes]]:
    encoded = [
        (hashlib.sha256(der).digest(), pb.Record(certificate_der=der, operator=op))
        for der, op in records.items()
    ]
    return sorted(
        (identity, msg.SerializeToString(deterministic=True)) for identity, msg in encoded
    )


@given(_sets, _sets)
def test_the_changes_on_a_base_are_those_of_its_identity_map(
    base: dict[bytes, str], current: dict[bytes, str]
) -> None:
    base_full = full_form(b"", (data for _, data in _entries(base)))
    entries = _entries(current)
    by_identity = read_whole(base_full).by_identity()
    expected_changed = [data for identity, data in entries if by_identity.get(identity) != data]
    kept = {identity for identity, _ in entries}
    expected_removed = sorted(identity for identity in by_identity if identity not in kept)
    assert changes_in(entries, read_parts(base_full)) == (expected_changed, expected_removed)


@given(_sets, _sets)
def test_the_rebuilt_parts_are_those_its_full_form_reads_back_as(
    base: dict[bytes, str], current: dict[bytes, str]
) -> None:
    base_full = full_form(b"", (data for _, data in _entries(base)))
    header = pb.SnapshotHeader(version=2, delta=True).SerializeToString(deterministic=True)
    changed, removed = changes_in(_entries(current), read_parts(base_full))
    on_base = read_parts(delta_form(header, changed, removed))
    parts, full = rebuild_parts(on_base, read_whole(base_full))
    assert full == full_form(header, (data for _, data in _entries(current)))
    assert parts == read_parts(full)


def test_a_delta_is_no_base() -> None:
    with pytest.raises(MalformedSnapshot, match="base removes records: it is a delta"):
        header = pb.SnapshotHeader(delta=True).SerializeToString()
        changes_in([], read_parts(delta_form(header, [], [b"\x00" * 32])))


def test_a_base_with_a_record_twice_is_refused_at_the_repeat_before_a_later_bad_record() -> None:
    """Identities are read in order: the first problem met is the one named."""
    header = pb.SnapshotHeader(party="jprs", version=1).SerializeToString(deterministic=True)
    record = pb.Record(certificate_der=b"\x30\x03\x02\x01\x01").SerializeToString()
    base = full_form(header, [record, record, b"\xff\xff"])
    with pytest.raises(DuplicateRecordError, match=r"base: record 1 \(\w+\) repeats"):
        rebuild(read_parts(full_form(header, [])), base)
