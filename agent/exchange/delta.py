"""Delta snapshots (issue 13): only what changed travels, the whole set stays committed.

A snapshot's payload is read here as its parts, the exact bytes of its header and of each
record (`invsync.v1.SnapshotParts`, the same wire form as SnapshotPayload), because the header's
records_root hashes each record's bytes as they stand. A full snapshot holds every record; a
delta holds the records added or changed since its base (the snapshot its previous_digest
names) and the identities it removes. Whoever holds the base's whole set (a SnapshotPayload with
the header as signed and every record, called the *full form* here: a delta's full form keeps
its header, `delta` flag included) rebuilds the new one and checks it against the signed
header: count,
identity digest and records_root. So the exchange, the peer and the evidence verifier all trust
one signed header, never the bytes someone rebuilt.

Every function here takes payload bytes whose signature was already verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from invsync.agent.errors import bounded
from invsync.agent.exchange.merkle import records_root
from invsync.agent.exchange.rejections import (
    DigestMismatchError,
    DuplicateRecordError,
    MalformedSnapshot,
)
from invsync.agent.kept import Kept
from invsync.v1 import invsync_pb2 as pb

IDENTITY_BYTES = 32


@dataclass(frozen=True)
class Parts:
    """A payload read as parts: its header's exact bytes (and their decoding), its records' exact
    bytes, and a delta's removals."""

    header_bytes: bytes
    header: pb.SnapshotHeader
    records: Sequence[bytes]
    removed: Sequence[bytes]

    @property
    def delta(self) -> bool:
        return self.header.delta


def read_parts(payload: bytes, what: str = "payload") -> Parts:
    """The parts of a snapshot payload; MalformedSnapshot if it has none or they do not parse."""
    try:
        parts = pb.SnapshotParts.FromString(payload)
        header = pb.SnapshotHeader.FromString(parts.header)
    except DecodeError as e:
        raise MalformedSnapshot(f"{what} is not a SnapshotPayload ({bounded(e)})") from e
    if not parts.HasField("header"):
        raise MalformedSnapshot(f"{what} has no header")
    if parts.removed and not header.delta:
        raise MalformedSnapshot(f"{what} removes records but is not a delta")
    records, removed = list(parts.records), list(parts.removed)
    if delta_form(parts.header, records, removed) != payload:
        # One reading of the signed bytes only: a header given twice is merged by a
        # SnapshotPayload parser but not here, so an auditor could read other content.
        raise MalformedSnapshot(f"{what} is not in the canonical encoding its builder writes")
    return Parts(parts.header, header, records, removed)


def accepted_header(payload: bytes, what: str = "payload") -> pb.SnapshotHeader:
    """The header of payload bytes `read_parts` took before (a snapshot the exchange accepted,
    or one built here), read alone: the canonical form puts it first, so the records (60 MB at
    100,000) need not be walked to learn a version, a delta flag or a checkpoint. Never for
    bytes just received: only `read_parts` says whether they are canonical. MalformedSnapshot
    if the bytes do not start with a header."""
    start, end = _header_span(payload, what)
    try:
        return pb.SnapshotHeader.FromString(payload[start:end])
    except DecodeError as e:
        raise MalformedSnapshot(f"{what}'s header does not parse ({bounded(e)})") from e


def header_end(payload: bytes, what: str = "payload") -> int:
    """Where the header of payload bytes `accepted_header` takes ends: the records and
    removals follow it, each as `delta_form` wrote it."""
    return _header_span(payload, what)[1]


def _header_span(payload: bytes, what: str) -> tuple[int, int]:
    if payload[:1] != _HEADER_TAG:
        raise MalformedSnapshot(f"{what} does not start with its header")
    length, at = _read_varint(payload, 1, what)
    if at + length > len(payload):
        raise MalformedSnapshot(f"{what} is shorter than its header's length")
    return at, at + length


def _read_varint(data: bytes, at: int, what: str) -> tuple[int, int]:
    """The varint at `at` and where it ends; at most ten bytes, as protobuf writes them."""
    value = 0
    for shift in range(0, 70, 7):
        if at >= len(data):
            break
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
    raise MalformedSnapshot(f"{what}'s header length is not a varint")


def identity_of(record: bytes, index: int) -> bytes:
    """The record's identity, the SHA-256 of its certificate DER, from its serialized bytes."""
    try:
        der = pb.Record.FromString(record).certificate_der
    except DecodeError as e:
        raise MalformedSnapshot(f"record {index} does not parse ({bounded(e)})") from e
    return hashlib.sha256(der).digest()


def full_form(header_bytes: bytes, records: Iterable[bytes]) -> bytes:
    """A full SnapshotPayload of these exact header and record bytes, records in the order given."""
    return delta_form(header_bytes, records, ())


def delta_form(header_bytes: bytes, changed: Iterable[bytes], removed: Iterable[bytes]) -> bytes:
    """SnapshotParts as protobuf's deterministic serialization writes it: the header (field 1),
    then each record (2) and each removal (3), in the order given, each one tag byte, its length
    as a varint and its bytes. Joined here, not serialized through a message: building a
    message of 100,000 records copied each into it first, and every read of a payload checks
    its bytes against this form (a test holds it to protobuf's own serialization)."""
    pieces = [_HEADER_TAG, varint(len(header_bytes)), header_bytes]
    for tag, values in ((_RECORD_TAG, changed), (_REMOVED_TAG, removed)):
        for value in values:
            pieces += (tag, varint(len(value)), value)
    return b"".join(pieces)


# Field 1, 2 and 3 of SnapshotParts, each of wire type 2 (length-delimited).
_HEADER_TAG, _RECORD_TAG, _REMOVED_TAG = b"\x0a", b"\x12", b"\x1a"
_VARINTS: Kept[int, bytes] = Kept()  # lengths repeat: a snapshot's records are of a few sizes


def varint(n: int) -> bytes:
    """`n` as a protobuf varint (a length, here: lengths repeat, so each is encoded once)."""
    encoded = _VARINTS.get(n)
    if encoded is None:
        out = bytearray()
        value = n
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
        encoded = _VARINTS.keep(n, bytes(out))
    return encoded


@dataclass(frozen=True)
class WholeSet:
    """A full form read as parts, with each record's identity in order (no identity twice).
    `decoded`: each record's bytes -> what a decoder made of them (agent.exchange.snapshot:
    the record and the bytes' SHA-256), when it kept that; a set rebuilt on this one shares
    the bytes of every record the delta left, so they need not be hashed or looked up again."""

    parts: Parts
    identities: Sequence[bytes]
    decoded: Mapping[bytes, tuple[Any, bytes]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def by_identity(self) -> dict[bytes, bytes]:
        return dict(zip(self.identities, self.parts.records, strict=True))


def read_whole(full: bytes, what: str = "base") -> WholeSet:
    """A full form's parts and identities; MalformedSnapshot for a delta, DuplicateRecordError
    for an identity given twice."""
    parts = read_parts(full, what)
    if parts.removed:
        raise MalformedSnapshot(f"{what} removes records: it is a delta, not a whole set")
    identities: list[bytes] = []
    seen: set[bytes] = set()
    for index, record in enumerate(parts.records):
        identity = identity_of(record, index)
        if identity in seen:
            raise DuplicateRecordError(f"{what}: record {index} ({identity.hex()}) repeats")
        seen.add(identity)
        identities.append(identity)
    return WholeSet(parts, identities)


def changes_in(
    entries: Sequence[tuple[bytes, bytes]], base: Parts
) -> tuple[list[bytes], list[bytes]]:
    """What a delta from the whole set `base` (the parts of a full form built here) to the set
    `entries` ((identity, record bytes), sorted) holds: the records added or changed, and the
    identities removed, in ascending order.

    A record's bytes name its identity, so a record of the base found byte for byte among
    `entries` is kept, and only the others (0.1 % of a steady cycle's) are parsed for theirs."""
    if base.removed:
        raise MalformedSnapshot("base removes records: it is a delta, not a whole set")
    held = set(base.records)
    changed = [data for _, data in entries if data not in held]
    current = {data for _, data in entries}
    identities = {identity for identity, _ in entries}
    removed = []
    for index, record in enumerate(base.records):
        if record not in current:
            identity = identity_of(record, index)
            if identity not in identities:
                removed.append(identity)
    return changed, sorted(removed)


def rebuild(delta: Parts, base_full: bytes) -> bytes:
    """The full form of `delta` applied to the base whose full form is `base_full`.

    MalformedSnapshot names a removal the base does not hold, or a record the delta names twice.
    The result is not yet checked against the header: decoding it does that.
    """
    return rebuild_parts(delta, read_whole(base_full))[1]


def rebuild_parts(delta: Parts, base: WholeSet) -> tuple[Parts, bytes]:
    """`rebuild` on a base read already, with the parts `read_parts` would read from the full
    form it returns: they are what it was joined from (a decode read all 60 MB of them again
    at 100,000)."""
    records = base.by_identity()
    _apply(records, delta)
    ordered = [records[identity] for identity in sorted(records)]
    full = full_form(delta.header_bytes, ordered)
    return Parts(delta.header_bytes, delta.header, ordered, []), full


def rebuild_chain(base_full: bytes, deltas: Sequence[Parts], *, check_root: bool = False) -> bytes:
    """The full form of the last of `deltas`, each a delta on the one before it and the first
    on the whole set `base_full`: applied to one set and joined once, so a chain of k deltas
    costs one rebuild, not k. The same checks as `rebuild`, each delta against the set it
    applies to. With `check_root`, the result's records must add up to the last header's
    records_root (DigestMismatchError), for a caller that uses it without decoding it."""
    if not deltas:
        return base_full
    records = read_whole(base_full).by_identity()
    for step in deltas:
        _apply(records, step)
    last = deltas[-1]
    ordered = sorted(records)
    if check_root:
        root = records_root((identity, records[identity]) for identity in ordered)
        if root != last.header.records_root:
            raise DigestMismatchError(
                f"the rebuilt whole set's records_root {root.hex()} is not the header's "
                f"{bounded(last.header.records_root.hex()) or '(empty)'}"
            )
    return full_form(last.header_bytes, [records[identity] for identity in ordered])


def _apply(records: dict[bytes, bytes], delta: Parts) -> None:
    """Apply `delta`'s removals, then its records, to a whole set held by identity."""
    for index, identity in enumerate(delta.removed):
        if len(identity) != IDENTITY_BYTES or records.pop(identity, None) is None:
            raise MalformedSnapshot(
                f"delta removal {index} ({bounded(identity.hex())}) is not a record of its base"
            )
    seen: set[bytes] = set()
    for index, record in enumerate(delta.records):
        identity = identity_of(record, index)
        if identity in seen:
            raise DuplicateRecordError(f"delta record {index} ({identity.hex()}) repeats")
        seen.add(identity)
        records[identity] = record


def served_whole(delta: Parts, full: bytes) -> Parts:
    """The parts of the whole set the exchange served with `delta`, once its header is the
    signed one."""
    parts = read_parts(full, "the whole set served with the delta")
    if parts.header_bytes != delta.header_bytes:
        raise MalformedSnapshot(
            "the whole set served with the delta carries another header than the signed one"
        )
    if parts.removed:
        raise MalformedSnapshot("the whole set served with the delta removes records")
    return parts
