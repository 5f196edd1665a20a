"""Delta snapshots (issue 13): built, pushed, accepted, served and rebuilt with real certificates,
and every way a delta can fail to match its signed header refused."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.exchange.delta import read_parts
from invsync.agent.exchange.rejections import (
    DigestMismatchError,
    DuplicateRecordError,
    MalformedSnapshot,
    StreamTooLarge,
)
from invsync.agent.exchange.snapshot import (
    Base,
    Built,
    build_snapshot,
    decode_payload,
    sign_snapshot,
)
from invsync.agent.model.record import CertRecord, Revocation
from invsync.server.snapshot_sets import whole_set
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, Keys, Rig, make_rig, payload

REVOKED = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "issuance-log:s.jsonl")


@pytest.fixture
def secom_pushed(rig: Rig, records: list[CertRecord]) -> None:
    rig.push(sign_snapshot(payload(records, "secom"), rig.keys.secom), "secom")


@pytest.fixture
def jprs_v1(rig: Rig, records: list[CertRecord], secom_pushed: None) -> bytes:
    """jprs's full first snapshot, of records[2:]."""
    data = payload(records)
    rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    return data


def snapshot(
    records: list[CertRecord], version: int = 1, base: Built | None = None, **extra: object
) -> Built:
    """jprs's snapshot `version` of `records`: full, or a delta on `base` when given."""
    fields: dict[str, object] = {
        "party": "jprs",
        "pairing": PAIRING,
        "role": "subordinate",
        "version": version,
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=1),
        "records": records,
        "previous_digest": hashlib.sha256(base.payload).digest() if base else b"",
        "base": base.full if base else None,
    }
    fields.update(extra)
    return build_snapshot(**fields)  # type: ignore[arg-type]


def changed(records: list[CertRecord]) -> list[CertRecord]:
    """records without the first, the second revoked: one removal and one change."""
    return [records[1].with_view(revocation=REVOKED), *records[2:]]


def base_of(built: Built) -> Base:
    return Base(hashlib.sha256(built.payload).hexdigest(), built.full)


def test_a_delta_holds_what_changed_and_rebuilds_to_the_whole_set(
    records: list[CertRecord],
) -> None:
    v1 = snapshot(records)
    v2 = snapshot(changed(records), 2, v1)
    parts = read_parts(v2.payload)
    assert parts.delta and len(parts.records) == 1  # the revoked one
    assert parts.removed == [bytes.fromhex(records[0].sha256)]
    assert len(v2.payload) * 5 < len(v2.full)  # one record of 15, and the header
    rebuilt = decode_payload(v2.payload, base=base_of(v1))
    whole = decode_payload(v2.payload, full=v2.full)  # as the exchange serves it
    assert rebuilt.records == whole.records
    assert rebuilt.full == v2.full
    assert rebuilt.payload_sha256 == hashlib.sha256(v2.payload).hexdigest()
    assert rebuilt.header.delta and rebuilt.header.record_count == len(records) - 1
    revoked = next(r for r in rebuilt.records if r.sha256 == records[1].sha256)
    assert revoked.revocation == REVOKED


def test_an_unchanged_set_makes_an_empty_delta(records: list[CertRecord]) -> None:
    v1 = snapshot(records)
    v2 = snapshot(records, 2, v1)
    parts = read_parts(v2.payload)
    assert (parts.records, parts.removed) == ([], [])
    assert decode_payload(v2.payload, base=base_of(v1)).records == decode_payload(v1.full).records


def test_a_delta_without_its_base_is_refused(records: list[CertRecord]) -> None:
    v2 = snapshot(changed(records), 2, snapshot(records))
    with pytest.raises(
        MalformedSnapshot, match=r"is a delta on \w+, and that base is not held here"
    ):
        decode_payload(v2.payload)


def test_a_delta_on_another_base_is_refused(records: list[CertRecord]) -> None:
    v1 = snapshot(records)
    other = snapshot(records[1:])
    v2 = snapshot(changed(records), 2, v1)
    with pytest.raises(MalformedSnapshot, match="not on the snapshot held here"):
        decode_payload(v2.payload, base=base_of(other))


def test_a_delta_whose_rebuilt_set_is_not_the_signed_one_is_refused(
    records: list[CertRecord],
) -> None:
    """A delta that leaves out a change (here: the revocation) rebuilds to a set whose root is
    not the header's: the receiver refuses it instead of trusting a stale record."""
    v1 = snapshot(records)
    v2 = snapshot(changed(records), 2, v1)
    msg = pb.SnapshotParts.FromString(v2.payload)
    del msg.records[:]
    dropped = msg.SerializeToString(deterministic=True)
    with pytest.raises(DigestMismatchError, match=r"records_root \w+ is not the Merkle root"):
        decode_payload(dropped, base=base_of(v1))


def test_a_removal_the_base_does_not_hold_is_refused(records: list[CertRecord]) -> None:
    v1 = snapshot(records[1:])
    v2 = snapshot(records[2:], 2, v1)
    msg = pb.SnapshotParts.FromString(v2.payload)
    msg.removed.append(bytes.fromhex(records[0].sha256))
    with pytest.raises(
        MalformedSnapshot, match=r"delta removal 1 \(.*\) is not a record of its base"
    ):
        decode_payload(msg.SerializeToString(), base=base_of(v1))


def test_a_record_named_twice_in_a_delta_is_refused(records: list[CertRecord]) -> None:
    v1 = snapshot(records)
    v2 = snapshot(changed(records), 2, v1)
    msg = pb.SnapshotParts.FromString(v2.payload)
    msg.records.append(msg.records[0])
    with pytest.raises(DuplicateRecordError, match=r"delta record 1 \(.*\) repeats"):
        decode_payload(msg.SerializeToString(), base=base_of(v1))


def test_a_served_whole_set_under_another_header_is_refused(records: list[CertRecord]) -> None:
    v1 = snapshot(records)
    v2 = snapshot(changed(records), 2, v1)
    v3 = snapshot(records, 3, v2)
    assert decode_payload(v2.payload, full=v2.full).full == v2.full
    with pytest.raises(MalformedSnapshot, match="carries another header than the signed one"):
        decode_payload(v2.payload, full=v3.full)


def test_the_exchange_accepts_a_delta_serves_it_and_keeps_two_whole_sets(
    rig: Rig, records: list[CertRecord], jprs_v1: bytes
) -> None:
    """jprs_v1 is a full snapshot of records[2:]: three deltas follow it; the exchange rebuilds
    each, keeps the whole sets of the latest two, and rebuilds an older one from its deltas."""
    chain = [Built(jprs_v1, jprs_v1)]
    sets = [records[2:], records[3:], [records[3].with_view(revocation=REVOKED), *records[4:]]]
    sets.append(records[1:])
    for version, listed in enumerate(sets[1:], start=2):
        chain.append(snapshot(listed, version, chain[-1]))
        rig.push(sign_snapshot(chain[-1].payload, rig.keys.jprs), "jprs")
    kept = rig.store.db.execute("SELECT version FROM snapshot_sets ORDER BY version").fetchall()
    assert [v for (v,) in kept] == [3, 4]
    assert [whole_set(rig.store, "jprs", PAIRING, v) for v in (1, 2, 3, 4)] == [
        built.full for built in chain
    ]
    served, full = rig.exchange.fetch_peer_snapshot("secom", PAIRING, 4, b"")
    assert (served.payload, full) == (chain[3].payload, chain[3].full)
    on_base = hashlib.sha256(chain[2].payload).digest()
    assert rig.exchange.fetch_peer_snapshot("secom", PAIRING, 4, on_base)[1] == b""
    latest = rig.store.report(PAIRING)
    assert latest is not None and b'"version":4' in latest.envelope.payload


def test_the_exchange_refuses_a_first_snapshot_that_is_a_delta(
    rig: Rig, records: list[CertRecord], secom_pushed: None
) -> None:
    v1 = snapshot(records)
    v2 = snapshot(changed(records), 1, v1, previous_digest=b"")
    message = "version 1 is a delta, but 'jprs' has no snapshot accepted in pairing"
    with pytest.raises(MalformedSnapshot, match=re.escape(message)):
        rig.push(sign_snapshot(v2.payload, rig.keys.jprs), "jprs")
    assert rig.snapshots() == 1


def test_a_payload_in_another_encoding_than_the_canonical_one_is_refused(
    records: list[CertRecord],
) -> None:
    """A header given twice reads one way here (the last) and another to a SnapshotPayload
    parser (merged): signed bytes must have one reading."""
    v1 = snapshot(records)
    parts = read_parts(v1.payload)
    extra = pb.SnapshotHeader(acknowledgements=[pb.Acknowledgement(code="x")]).SerializeToString()
    twice = pb.SnapshotParts(header=extra).SerializeToString() + v1.payload
    message = "payload is not in the canonical encoding its builder writes"
    with pytest.raises(MalformedSnapshot, match=message):
        decode_payload(twice)
    assert read_parts(v1.payload).header_bytes == parts.header_bytes


def test_a_delta_whose_whole_set_passes_the_size_limit_is_refused(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    """Deltas each under max_snapshot_bytes cannot grow a whole set past it: a fetch without
    the base could not carry it."""
    chain = [snapshot(records[:3])]
    limit = 2 * len(chain[0].full)
    rig = make_rig(tmp_path / "small.db", keys, max_snapshot_bytes=limit)
    try:
        rig.push(sign_snapshot(chain[0].payload, rig.keys.jprs), "jprs")
        for count in range(5, len(records), 2):
            grown = snapshot(records[:count], len(chain) + 1, chain[-1])
            if len(grown.full) > limit:
                break
            rig.push(sign_snapshot(grown.payload, rig.keys.jprs), "jprs")
            chain.append(grown)
        assert len(grown.payload) < limit < len(grown.full)
        message = f"whole set would be {len(grown.full)} bytes, over the limit of {limit} bytes"
        with pytest.raises(StreamTooLarge, match=message):
            rig.push(sign_snapshot(grown.payload, rig.keys.jprs), "jprs")
        assert rig.snapshots() == len(chain)
    finally:
        rig.store.close()


def test_every_64th_whole_set_is_kept_so_a_rebuild_stays_short(
    rig: Rig, records: list[CertRecord], jprs_v1: bytes
) -> None:
    chain = [Built(jprs_v1, jprs_v1)]
    for version in range(2, 68):
        listed = records[2:] if version % 2 else records[3:]
        chain.append(snapshot(listed, version, chain[-1]))
        rig.push(sign_snapshot(chain[-1].payload, rig.keys.jprs), "jprs")
    kept = rig.store.db.execute("SELECT version FROM snapshot_sets ORDER BY version").fetchall()
    assert [v for (v,) in kept] == [64, 66, 67]
    assert whole_set(rig.store, "jprs", PAIRING, 65) == chain[64].full
