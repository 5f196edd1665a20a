"""Snapshot payloads (build, decode) and their chunked stream form, with real certificates."""

from __future__ import annotations

import hashlib
import re
import weakref
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.exchange import keys, snapshot
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.merkle import records_digest
from invsync.agent.exchange.rejections import IncompleteStream, MalformedSnapshot, StreamTooLarge
from invsync.agent.model.record import CertRecord, Revocation, SourceRef
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import edited
from tests.exchange_rig import payload as rig_payload

NOW = datetime(2021, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def viewed_records(jprs_records: tuple[CertRecord, ...]) -> list[CertRecord]:
    """`jprs_records` with a party's view: an operator, lifecycles, a source, a revocation."""
    seen = SourceRef("pem", "jprs.pem:1", NOW - timedelta(days=30), NOW)
    revoked = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "issuance-log:s.jsonl")
    return [
        jprs_records[0].with_view(operator="jprs", lifecycle="in-use", sources=(seen,)),
        jprs_records[1].with_view(lifecycle="unused", revocation=revoked),
        *jprs_records[2:],
    ]


def on_the_wire(record: CertRecord) -> CertRecord:
    """`record` as a snapshot carries it: each source's last_seen left out, read as first_seen."""
    sources = tuple(replace(s, last_seen=s.first_seen) for s in record.sources)
    return replace(record, sources=sources)


@pytest.fixture(scope="module")
def key() -> keys.SigningKey:
    return keys.generate()


def build(records: list[CertRecord], **changes: object) -> bytes:
    fields: dict[str, object] = {
        "party": "jprs",
        "pairing": "secom-jprs",
        "role": "subordinate",
        "version": 3,
        "issued_at": NOW,
        "expires_at": NOW + timedelta(days=7),
        "previous_digest": b"\x11" * 32,
        "scope_issuer_spki": (b"spki-1",),
        "records": records,
    }
    fields.update(changes)
    return snapshot.build_payload(**fields)  # type: ignore[arg-type]


def test_round_trip(viewed_records: list[CertRecord]) -> None:
    payload = build(list(reversed(viewed_records)))
    decoded = snapshot.decode_payload(payload)
    header = decoded.header
    assert (header.party, header.pairing, header.role, header.version) == (
        "jprs",
        "secom-jprs",
        "subordinate",
        3,
    )
    assert (header.issued_at, header.expires_at) == (NOW, NOW + timedelta(days=7))
    assert header.previous_digest == b"\x11" * 32
    assert header.scope_issuer_spki == (b"spki-1",)
    assert header.record_count == len(viewed_records) == 16
    assert header.records_digest == records_digest(r.sha256 for r in viewed_records)
    assert decoded.payload_sha256 == hashlib.sha256(payload).hexdigest()
    # Sorted by identity, and the party's view survives the trip unchanged, but for each
    # source's last_seen, which stays in the party's store (the wire says first_seen).
    assert list(decoded.records) == sorted(map(on_the_wire, viewed_records), key=lambda r: r.sha256)
    assert decoded.records[5].sources[0].last_seen == NOW - timedelta(days=30)


def test_the_header_carries_the_latest_log_checkpoint_verified(
    viewed_records: list[CertRecord],
) -> None:
    note = "demo-exchange\n9\nAAAA\n\n\u2014 demo-exchange c2lnbmF0dXJl\n".encode()
    carried = snapshot.decode_payload(build(viewed_records, log_checkpoint=note)).header
    assert carried.log_checkpoint == note  # as the agent verified it, byte for byte
    assert snapshot.decode_payload(build(viewed_records)).header.log_checkpoint == b""


def test_two_versions_alive_at_once_share_their_unchanged_records(
    viewed_records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot, "_ALIVE", weakref.WeakValueDictionary())
    decoded: list[bytes] = []
    real = snapshot._decoded_record

    def counted(data: bytes, index: int) -> CertRecord:
        decoded.append(data)
        return real(data, index)

    monkeypatch.setattr(snapshot, "_decoded_record", counted)
    changed = [viewed_records[0].with_view(operator="someone else"), *viewed_records[1:]]
    before = snapshot.decode_payload(build(viewed_records))
    assert len(decoded) == len(viewed_records)
    after = snapshot.decode_payload(build(changed, version=4))
    assert len(decoded) == len(viewed_records) + 1  # only the changed record decoded again
    shared = {id(r) for r in before.records} & {id(r) for r in after.records}
    assert len(shared) == len(viewed_records) - 1
    assert list(after.records) == sorted(map(on_the_wire, changed), key=lambda r: r.sha256)


def test_build_is_order_independent(viewed_records: list[CertRecord]) -> None:
    assert build(viewed_records) == build(list(reversed(viewed_records)))


def test_build_refuses_duplicates(viewed_records: list[CertRecord]) -> None:
    with pytest.raises(ValueError, match=f"record {viewed_records[0].sha256} appears twice"):
        build([viewed_records[0], viewed_records[1], viewed_records[0]])


def test_build_refuses_naive_time(viewed_records: list[CertRecord]) -> None:
    with pytest.raises(ValueError, match="naive datetime 2021-03-01T00:00:00"):
        build(viewed_records, issued_at=datetime(2021, 3, 1))


def test_build_refuses_unknown_role(viewed_records: list[CertRecord]) -> None:
    with pytest.raises(ValueError, match="role must be 'root' or 'subordinate', got 'peer'"):
        build(viewed_records, role="peer")


def test_sign_snapshot(viewed_records: list[CertRecord], key: keys.SigningKey) -> None:
    env = snapshot.sign_snapshot(build(viewed_records), key)
    assert env.payload_type == snapshot.SNAPSHOT_PAYLOAD_TYPE
    assert [s.keyid for s in env.signatures] == [key.keyid]


def malformed(payload: bytes, message: str) -> None:
    with pytest.raises(MalformedSnapshot, match=re.escape(message)):
        snapshot.decode_payload(payload)


def test_decode_bad_der_names_record(viewed_records: list[CertRecord]) -> None:
    def corrupt(msg: pb.SnapshotPayload) -> None:
        msg.records[1].certificate_der = b"\x30\x03\x02\x01\x01"

    malformed(edited(build(viewed_records), corrupt), "record 1: certificate DER does not parse")


def test_decode_unknown_role(viewed_records: list[CertRecord]) -> None:
    def unset(msg: pb.SnapshotPayload) -> None:
        msg.header.role = pb.ROLE_UNSPECIFIED

    malformed(edited(build(viewed_records), unset), "header has unknown role 0")


@pytest.mark.parametrize("field", ["issued_at", "expires_at"])
def test_decode_missing_time(viewed_records: list[CertRecord], field: str) -> None:
    def drop(msg: pb.SnapshotPayload) -> None:
        msg.header.ClearField(field)  # type: ignore[arg-type]

    malformed(edited(build(viewed_records), drop), f"header has no {field}")


def test_decode_version_zero(viewed_records: list[CertRecord]) -> None:
    malformed(build(viewed_records, version=0), "header version is 0; versions start at 1")


def test_decode_no_header() -> None:
    malformed(b"", "payload has no header")


def test_decode_not_protobuf() -> None:
    malformed(b"\xff\xff\xff", "payload is not a SnapshotPayload")


def test_decode_unknown_lifecycle(viewed_records: list[CertRecord]) -> None:
    def odd(msg: pb.SnapshotPayload) -> None:
        msg.records[2].lifecycle = "retired"

    sha = sorted(r.sha256 for r in viewed_records)[2]
    malformed(edited(build(viewed_records), odd), f"record 2 ({sha}): unknown lifecycle 'retired'")


def test_decode_unknown_revocation_reason(viewed_records: list[CertRecord]) -> None:
    def odd(msg: pb.SnapshotPayload) -> None:
        msg.records[0].revocation.revoked_at.FromDatetime(NOW)
        msg.records[0].revocation.reason = "bored"

    malformed(edited(build(viewed_records), odd), "unknown revocation reason 'bored'")


# The chunked stream


@pytest.fixture(scope="module")
def env() -> Envelope:
    return Envelope(snapshot.SNAPSHOT_PAYLOAD_TYPE, bytes(range(256)) * 4, (Sig("ab", b"sig"),))


def test_chunks_round_trip(env: Envelope) -> None:
    chunks = list(snapshot.to_chunks(env, chunk_size=100))
    assert [c.WhichOneof("part") for c in chunks] == ["data"] * 11 + ["trailer"]
    assert snapshot.from_chunks(chunks, max_bytes=len(env.payload)) == env


def test_chunks_default_size_is_one_chunk_for_small_payloads(env: Envelope) -> None:
    assert len(list(snapshot.to_chunks(env))) == 2


def test_chunks_empty_payload() -> None:
    empty = Envelope(snapshot.SNAPSHOT_PAYLOAD_TYPE, b"")
    assert snapshot.from_chunks(snapshot.to_chunks(empty), max_bytes=0) == empty


def test_missing_trailer(env: Envelope) -> None:
    chunks = list(snapshot.to_chunks(env, chunk_size=100))[:-1]
    with pytest.raises(IncompleteStream, match="stream ended after 1024 bytes without a trailer"):
        snapshot.from_chunks(chunks, max_bytes=10_000)


def test_data_after_trailer(env: Envelope) -> None:
    chunks = [*snapshot.to_chunks(env, chunk_size=100), pb.SnapshotChunk(data=b"x")]
    with pytest.raises(IncompleteStream, match="chunk 12 follows the trailer"):
        snapshot.from_chunks(chunks, max_bytes=10_000)


def test_empty_chunk(env: Envelope) -> None:
    with pytest.raises(IncompleteStream, match="chunk 0 carries neither data nor a trailer"):
        snapshot.from_chunks([pb.SnapshotChunk()], max_bytes=10_000)


def test_wrong_length(env: Envelope) -> None:
    chunks = list(snapshot.to_chunks(env, chunk_size=100))
    del chunks[3]
    with pytest.raises(IncompleteStream, match="received 924 bytes but the trailer announces 1024"):
        snapshot.from_chunks(chunks, max_bytes=10_000)


def test_wrong_digest(env: Envelope) -> None:
    chunks = list(snapshot.to_chunks(env, chunk_size=100))
    chunks[0] = pb.SnapshotChunk(data=b"\x01" + chunks[0].data[1:])
    with pytest.raises(IncompleteStream, match="differs from the trailer's"):
        snapshot.from_chunks(chunks, max_bytes=10_000)


def test_over_max_bytes_stops_reading(env: Envelope) -> None:
    consumed: list[int] = []

    def stream() -> Iterator[pb.SnapshotChunk]:
        for i, chunk in enumerate(snapshot.to_chunks(env, chunk_size=100)):
            consumed.append(i)
            yield chunk

    with pytest.raises(StreamTooLarge, match="exceeds the limit of 250 bytes"):
        snapshot.from_chunks(stream(), max_bytes=250)
    assert consumed == [0, 1, 2]  # the third chunk was refused, nothing after it read


def test_too_large_is_an_incomplete_stream() -> None:
    assert issubclass(StreamTooLarge, IncompleteStream)


def test_a_certificate_alive_elsewhere_in_the_process_is_not_parsed_again(
    records: list[CertRecord],
) -> None:
    """Parse once (issue 13): decoding a snapshot while another holding the same certificates is
    alive shares their CertInfo, which is immutable."""
    data = rig_payload(records)
    first = snapshot.decode_payload(data)
    second = snapshot.decode_payload(data)
    assert all(a.info is b.info for a, b in zip(first.records, second.records, strict=True))
