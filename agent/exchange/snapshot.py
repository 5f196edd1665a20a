"""Signed inventory snapshots: build a payload, sign it, decode a verified one, stream it.

The payload is a serialized `invsync.v1.SnapshotPayload`; it is signed as those exact bytes
(`agent.exchange.envelope`), and `decode_payload` must only ever see bytes whose signature was
already checked (`agent.exchange.acceptance` does so in that order). Every derived certificate field
is recomputed from the DER on decoding; nothing the sender claims about a certificate is trusted.

On the wire a snapshot is a stream of data chunks closed by a trailer (DESIGN §6): the trailer
carries the total length, digest, payload type and signatures, so a stream that breaks or ends
early is detected before anything is verified or stored.
"""

from __future__ import annotations

import hashlib
import io
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

from google.protobuf.message import DecodeError

from invsync.agent.errors import bounded
from invsync.agent.exchange import delta, envelope, recent_snapshots
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.merkle import merkle_root, records_root_of
from invsync.agent.exchange.record_codec import (
    from_timestamp,
    record_bytes,
    record_from_pb,
    timestamp,
    wire_view,
)
from invsync.agent.exchange.rejections import (
    DigestMismatchError,
    IncompleteStream,
    MalformedSnapshot,
    StreamTooLarge,
    VersionOutOfRangeError,
)
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.last_values import LastValues, same_sent
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import SHA256_OF as _SHA256
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Snapshot, SnapshotHeader
from invsync.v1 import invsync_pb2 as pb

SNAPSHOT_PAYLOAD_TYPE = "application/vnd.invsync.snapshot.v1+protobuf"
# The largest version: what SQLite's INTEGER (the store) holds; the wire's uint64 holds more.
MAX_VERSION = (1 << 63) - 1
DEFAULT_CHUNK_SIZE = 256 * 1024  # bytes; well under gRPC's 4 MiB default message limit

_ROLE_TO_PB = {ROOT: pb.ROLE_ROOT, SUBORDINATE: pb.ROLE_SUBORDINATE}
_ROLE_FROM_PB = {v: k for k, v in _ROLE_TO_PB.items()}


@dataclass(frozen=True)
class Built:
    """A snapshot built: `payload` is what is signed (the whole set, or a delta on the base it
    was built on) and `full` the whole set under the same header (`payload` itself when full)."""

    payload: bytes
    full: bytes
    # Records as decoding the payload gives them, made from the records it was built from
    # (`record_codec.wire_view`): while they are held, decoding shares them instead of
    # decoding each record again (the agent decodes its own snapshot for the report check).
    decoded: tuple[CertRecord, ...] = ()
    # The payload as `decode_payload` gives it, when every record has a view: the agent's
    # report check takes its own snapshot from here instead of decoding it.
    snapshot: Snapshot | None = None
    # The snapshot the delta builds on, as decoding it gives it, made from the base's records
    # that `snapshot` shares and the few it does not (the report check compares the previous
    # snapshot too); None when `snapshot` is, or for a full snapshot.
    previous: Snapshot | None = None

    @property
    def delta(self) -> bool:
        return self.payload is not self.full


def build_payload(
    *,
    party: str,
    pairing: str,
    role: str,
    version: int,
    issued_at: datetime,
    expires_at: datetime,
    records: Sequence[CertRecord],
    previous_digest: bytes = b"",
    scope_issuer_spki: Sequence[bytes] = (),
    profiles: Sequence[OperatorProfile] = (),
    acknowledgements: Sequence[Acknowledgement] = (),
    next_signing_key: bytes = b"",
    log_checkpoint: bytes = b"",
) -> bytes:
    """A serialized full SnapshotPayload: records sorted by identity, count and digests set.

    `role` is "root" or "subordinate"; `previous_digest` is the raw SHA-256 of the previous
    accepted payload (empty for the first); `next_signing_key` is the SubjectPublicKeyInfo DER
    of a key the party announces (agent.exchange.keyring), which must then sign the envelope too;
    `log_checkpoint` is the signed note of the latest log checkpoint the party verified (b"": none).
    Raises ValueError on a caller bug: an unknown role, a naive datetime, or two records with
    one identity (the inventory merges those).
    """
    return build_snapshot(
        party=party,
        pairing=pairing,
        role=role,
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        records=records,
        previous_digest=previous_digest,
        scope_issuer_spki=scope_issuer_spki,
        profiles=profiles,
        acknowledgements=acknowledgements,
        next_signing_key=next_signing_key,
        log_checkpoint=log_checkpoint,
    ).payload


def build_snapshot(
    *,
    party: str,
    pairing: str,
    role: str,
    version: int,
    issued_at: datetime,
    expires_at: datetime,
    records: Sequence[CertRecord],
    previous_digest: bytes = b"",
    scope_issuer_spki: Sequence[bytes] = (),
    profiles: Sequence[OperatorProfile] = (),
    acknowledgements: Sequence[Acknowledgement] = (),
    next_signing_key: bytes = b"",
    log_checkpoint: bytes = b"",
    base: bytes | None = None,
    memo: BuildMemo | None = None,
) -> Built:
    """`build_payload`, as a delta when `base` is given: the full form of the snapshot
    `previous_digest` names, which the receiver holds (agent.exchange.delta). `memo`: what the
    last build of a daemon's pairing left (`BuildMemo`), used where it holds and then renewed."""
    if role not in _ROLE_TO_PB:
        raise ValueError(f"role must be {ROOT!r} or {SUBORDINATE!r}, got {role!r}")
    ordered = sorted(records, key=_SHA256)
    _refuse_duplicates(ordered)
    encoded = memo.encodings.of(ordered, _encoded) if memo else [_encoded(r) for r in ordered]
    entries = [(identity, data) for identity, data, _, _ in encoded]
    digests = [digest for _, _, digest, _ in encoded]
    header = pb.SnapshotHeader(
        party=party,
        pairing=pairing,
        role=_ROLE_TO_PB[role],
        version=version,
        issued_at=timestamp(issued_at),
        expires_at=timestamp(expires_at),
        previous_digest=previous_digest,
        record_count=len(ordered),
        records_digest=merkle_root([identity for identity, _ in entries]),
        scope_issuer_spki=scope_issuer_spki,
        profiles=[_profile_to_pb(p) for p in profiles],
        acknowledgements=[_ack_to_pb(a) for a in acknowledgements],
        next_signing_key=next_signing_key,
        log_checkpoint=log_checkpoint,
        delta=base is not None,
        records_root=records_root_of(zip((i for i, _ in entries), digests, strict=True)),
    )
    header_bytes = header.SerializeToString(deterministic=True)
    full = delta.full_form(header_bytes, (data for _, data in entries))
    decoded = tuple([view for _, _, _, view in encoded if view is not None])
    whole_set = delta.Parts(header_bytes, header, [data for _, data in entries], [])
    base_parts = memo.base_parts(previous_digest, base) if memo and base is not None else None
    from_memo = base_parts is not None
    if base is None:
        whole = len(decoded) == len(ordered)
        snapshot = _as_decoded(header, decoded, full, full) if whole else None
        built, unchanged = Built(full, full, decoded, snapshot), False
    else:
        base_parts = base_parts or delta.read_parts(base, "base")
        changed, removed = delta.changes_in(entries, base_parts)
        built = _on_base(
            base, base_parts, previous_digest, header, header_bytes,
            changed, removed, entries, digests, full, decoded,
        )  # fmt: skip
        unchanged = not changed and not removed
    if memo is not None:
        held = None
        # The base too, when holding it costs nothing more: its records are the memo's, or
        # (the build changed nothing) the ones just built; else they would be held twice.
        if (
            base is not None
            and base_parts is not None
            and previous_digest
            and (unchanged or from_memo)
        ):
            kept_records = whole_set.records if unchanged else base_parts.records
            kept = delta.Parts(base_parts.header_bytes, base_parts.header, kept_records, [])
            held = (previous_digest, len(base), kept)
        memo.keep(built.payload, full, whole_set, held)
    return built


def _on_base(
    base: bytes,
    base_parts: delta.Parts,
    previous_digest: bytes,
    header: pb.SnapshotHeader,
    header_bytes: bytes,
    changed: Sequence[bytes],
    removed: Sequence[bytes],
    entries: Sequence[tuple[bytes, bytes]],
    digests: Sequence[bytes],
    full: bytes,
    decoded: tuple[CertRecord, ...],
) -> Built:
    """The delta on `base` of the set built (`changed` and `removed` on it), with the snapshots
    it and its base decode to when every record has a view (the base's only if
    `previous_digest` names its payload)."""
    payload = delta.delta_form(header_bytes, changed, removed)
    if len(decoded) != len(entries):
        return Built(payload, full, decoded)
    snapshot = _as_decoded(header, decoded, payload, full)
    if not previous_digest:  # the base's payload unknown: its snapshot is not named
        return Built(payload, full, decoded, snapshot)
    known = {
        data: (view, key) for (_, data), view, key in zip(entries, decoded, digests, strict=True)
    }
    previous = _previous(base_parts, base, previous_digest, known)
    return Built(payload, full, decoded, snapshot, previous)


def _as_decoded(
    header: pb.SnapshotHeader, records: tuple[CertRecord, ...], payload: bytes, full: bytes
) -> Snapshot:
    """What `decode_payload(payload, full=full)` returns, from what the builder holds: the
    header it serialized, the records' views in identity order, and the whole set it joined."""
    digest = hashlib.sha256(payload).hexdigest()
    return Snapshot(_header_from_pb(header), records, digest, full=full)


class BuildMemo:
    """What a daemon's last build of a pairing's snapshot leaves for the next one: each record's
    encoding (`Encoded`), and whole sets as parts for a next build on one of them as the base:
    the last build's, and the base it was built on when holding it costs nothing more (a draft
    that changed nothing is not pushed, and the next cycle builds on that base again). A base
    is known by the payload digest the next build names as its previous one (and its length),
    and need not be read: 60 MB parsed and checked canonical at 100,000."""

    def __init__(self) -> None:
        self.encodings: LastValues[Encoded] = LastValues(same_sent)
        self._wholes: dict[bytes, tuple[int, delta.Parts]] = {}

    def keep(
        self,
        payload: bytes,
        full: bytes,
        parts: delta.Parts,
        base: tuple[bytes, int, delta.Parts] | None = None,
    ) -> None:
        """The whole set just built, under its payload's digest; and the base's, given as
        (its payload's digest, its length, its parts)."""
        wholes = {hashlib.sha256(payload).digest(): (len(full), parts)}
        if base is not None:
            wholes[base[0]] = (base[1], base[2])
        self._wholes = wholes

    def whole(self, payload_digest: bytes) -> bytes | None:
        """The full form of a whole set held here, by its payload's digest; None if not held."""
        held = self._wholes.get(payload_digest)
        return delta.full_form(held[1].header_bytes, held[1].records) if held else None

    def base_parts(self, previous_digest: bytes, base: bytes) -> delta.Parts | None:
        """The parts of `base` if it is a whole set held here, named by its payload digest;
        else None."""
        held = self._wholes.get(previous_digest) if previous_digest else None
        return held[1] if held is not None and held[0] == len(base) else None


Encoded = tuple[bytes, bytes, bytes, CertRecord | None]
"""A record as a snapshot holds it: its identity, its bytes, their SHA-256, and its wire view
(None when it has none and is decoded instead), shared with decoders by that SHA-256."""


def _encoded(record: CertRecord) -> Encoded:
    data = record_bytes(record)
    digest = hashlib.sha256(data).digest()
    view = wire_view(record)
    if view is not None:
        with _ALIVE_LOCK:
            view = _ALIVE.setdefault(digest, view)
    return bytes.fromhex(record.sha256), data, digest, view


def _previous(
    parts: delta.Parts,
    base: bytes,
    payload_digest: bytes,
    known: dict[bytes, tuple[CertRecord, bytes]],
) -> Snapshot | None:
    """What `decode_payload` gives for the snapshot whose whole set is `base` (built here) and
    whose payload's SHA-256 is `payload_digest`, its records as `_records_of` finds them. The
    records_root is not checked again: the base is this agent's own earlier build. None if a
    record does not decode, which a decode of the snapshot will say."""
    try:
        records, _ = _records_of(parts.records, known)
    except MalformedSnapshot:
        return None
    return Snapshot(_header_from_pb(parts.header), records, payload_digest.hex(), full=base)


def _records_of(
    data: Sequence[bytes], known: Mapping[bytes, tuple[CertRecord, bytes]]
) -> tuple[tuple[CertRecord, ...], list[bytes]]:
    """The records of a whole set's record bytes, with each one's SHA-256: from `known` (bytes
    -> the record they decode to, and their SHA-256) when found there byte for byte, decoded
    otherwise (MalformedSnapshot for one that does not decode)."""
    records, digests = [], []
    for index, one in enumerate(data):
        found = known.get(one)
        if found is None:
            key = hashlib.sha256(one).digest()
            found = (_record_from_bytes(one, key, index), key)
        records.append(found[0])
        digests.append(found[1])
    return tuple(records), digests


def sign_snapshot(payload: bytes, key: SigningKey) -> Envelope:
    """An envelope of type SNAPSHOT_PAYLOAD_TYPE over `payload`, signed by `key`."""
    return envelope.sign(SNAPSHOT_PAYLOAD_TYPE, payload, [key])


@dataclass(frozen=True)
class Base:
    """The snapshot a delta builds on, as its receiver holds it: the digest of its signed
    payload (what the delta's previous_digest must name) and its full form, or that whole set
    as read already (`whole`, kept by a daemon from decoding it: `full` is then not needed)."""

    payload_sha256: str
    full: bytes
    whole: delta.WholeSet | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Served(Envelope):
    """A snapshot envelope with what decoding a delta needs beside the signed bytes: the whole
    set the exchange served with it (`full`), or the base its receiver holds (`base`). Neither is
    signed nor read before the signature over the payload verified; both are then checked
    against the signed header."""

    full: bytes = b""
    base: Base | None = None


def decode_payload(payload: bytes, *, full: bytes = b"", base: Base | None = None) -> Snapshot:
    """Decode payload bytes whose signature was already verified into a Snapshot.

    A delta needs its whole set: `full`, as the exchange served it, or `base`, the full form of
    the snapshot it builds on (previous_digest), held by the caller. The header's record_count
    and records_digest are returned as claimed; `agent.exchange.acceptance` compares them with
    the records. records_root, when the header has one (always in a delta), is checked here.
    Raises MalformedSnapshot naming the field or record index. In an agent process, payload
    bytes decoded a moment ago come back as they were decoded (agent.exchange.recent_snapshots).
    """
    digest = hashlib.sha256(payload).hexdigest()
    recent = recent_snapshots.installed()
    known = recent.get(digest) if recent is not None else None
    if known is not None and _decodable(known.header, full, base):
        return known
    parts = delta.read_parts(payload)
    if recent is not None:
        kept_base = recent.base(digest, parts.header_bytes)
        if kept_base is not None and _decodable(kept_base.header, full, base):
            recent.put(kept_base)
            return kept_base
    header = _header_from_pb(parts.header)
    whole, whole_bytes, held = _whole(parts, header, payload, full=full, base=base)
    # Each record's bytes hashed once: the key its decoded record is shared by, and its leaf.
    # Those a held base decoded (the same bytes objects, rebuilt on it) are taken from it.
    on_held = base.whole.decoded if base is not None and base.whole is not None else {}
    records, digests = _records_of(whole.records, on_held)
    identities = tuple([bytes.fromhex(r.info.sha256) for r in records])
    if parts.header.records_root or parts.delta:
        _check_root(parts.header.records_root, identities, digests)
    snapshot = Snapshot(header, records, digest, full=whole_bytes, identities=identities)
    if recent is not None:
        recent.put(snapshot)
        # The whole set as read (a full payload's own, or a delta's just rebuilt): the base
        # of the peer's next delta, if this snapshot is accepted (a cold cycle's full one too).
        if recent.keeps_wholes:
            decoded = dict(zip(whole.records, zip(records, digests, strict=True), strict=True))
            recent.hold_whole(digest, delta.WholeSet(whole, identities, decoded))
        # The base is often held already: a daemon keeps each party's newest snapshot.
        if (
            held is not None
            and base is not None
            and base.full
            and not recent.get(base.payload_sha256)
        ):
            _keep_base(recent, base, held, zip(whole.records, records, digests, strict=True))
    return snapshot


def _keep_base(
    recent: recent_snapshots.RecentSnapshots,
    base: Base,
    held: delta.WholeSet,
    decoded: Iterable[tuple[bytes, CertRecord, bytes]],
) -> None:
    """Keep the base a delta was just rebuilt on, as decoding its whole set gives it: the
    report check decodes the peer's previous snapshot, which is that base, right after the
    current one. A record of the base found byte for byte among the records just decoded
    (each with its bytes' SHA-256) is taken from there, and only the others are decoded;
    the records are checked against the base's own records_root, as a decode checks them.
    Nothing is kept if a record does not decode, the root differs, or the base has none (an
    older snapshot's header would not tie its records to its payload): a decode of the base
    then says what is wrong, or decodes it as before. `RecentSnapshots.base` answers it only
    to a payload carrying the very header it was checked against."""
    if not held.parts.header.records_root:  # an older snapshot: nothing would check its records
        return
    known = {data: (record, digest) for data, record, digest in decoded}
    try:
        records, digests = _records_of(held.parts.records, known)
        _check_root(held.parts.header.records_root, held.identities, digests)
        header = _header_from_pb(held.parts.header)
    except (MalformedSnapshot, DigestMismatchError):
        return
    snapshot = Snapshot(
        header, records, base.payload_sha256, full=base.full,
        identities=tuple(held.identities),
    )  # fmt: skip
    recent.put_base(snapshot, held.parts.header_bytes)


def _decodable(header: SnapshotHeader, full: bytes, base: Base | None) -> bool:
    """Whether a snapshot decoded before may be answered to these arguments: a delta only
    with a whole set served (its records were checked against the signed records_root when
    first decoded), or on the base its header names, never on another base or none, which a
    fresh decode refuses (the restore tries a delta on each of several bases)."""
    if not header.delta or full:
        return True
    return base is not None and base.payload_sha256 == header.previous_digest.hex()


def decode_header(payload: bytes) -> SnapshotHeader:
    """Only the header of verified payload bytes, full or delta."""
    return _header_from_pb(delta.read_parts(payload).header)


def decode_envelope(env: Envelope) -> Snapshot:
    """`decode_payload` of a verified envelope, with what a `Served` one brings."""
    if isinstance(env, Served):
        return decode_payload(env.payload, full=env.full, base=env.base)
    return decode_payload(env.payload)


def _whole(
    parts: delta.Parts, header: SnapshotHeader, payload: bytes, *, full: bytes, base: Base | None
) -> tuple[delta.Parts, bytes, delta.WholeSet | None]:
    """The whole set's parts and its full form's bytes, each read once (a full form read by
    `read_parts` is its canonical encoding, so the bytes read are the bytes `full_form` of
    the parts would write again), and the base as read when the delta was rebuilt on it."""
    if not parts.delta:
        return parts, payload, None
    if full:
        return delta.served_whole(parts, full), full, None
    if base is not None:
        if header.previous_digest.hex() != base.payload_sha256:
            raise MalformedSnapshot(
                f"version {header.version} of {header.party} is a delta on "
                f"{bounded(header.previous_digest.hex())[:16] or '(nothing)'}, "
                f"not on the snapshot held here ({base.payload_sha256[:16]})"
            )
        held = base.whole or delta.read_whole(base.full)
        rebuilt, whole = delta.rebuild_parts(parts, held)
        return rebuilt, whole, held
    raise MalformedSnapshot(
        f"version {header.version} of {header.party} is a delta on "
        f"{header.previous_digest.hex()[:16] or '(nothing)'}, and that base is not held here"
    )


def _check_root(claimed: bytes, identities: Sequence[bytes], digests: Sequence[bytes]) -> None:
    root = records_root_of(zip(identities, digests, strict=True))
    if claimed != root:
        raise DigestMismatchError(
            f"records_root {bounded(claimed.hex()) or '(empty)'} is not the Merkle root "
            f"{root.hex()} of the records"
        )


# Every record decoded and still alive in the process, by the SHA-256 of its exact bytes (the
# bytes themselves as keys would be held as long as the record): two versions of a chain
# differ in a few records, and a report's check holds both (current and previous) of both
# parties, so the second decode of each shares the first's records. Weak, like the CertInfo
# of agent.model.record: it holds nothing no one else holds. CertRecord is immutable.
_ALIVE: weakref.WeakValueDictionary[bytes, CertRecord] = weakref.WeakValueDictionary()
_ALIVE_LOCK = threading.Lock()


def _record_from_bytes(data: bytes, key: bytes, index: int) -> CertRecord:
    """The record of `data`, whose SHA-256 is `key`."""
    with _ALIVE_LOCK:
        alive = _ALIVE.get(key)
    if alive is not None:
        return alive
    decoded = _decoded_record(data, index)
    with _ALIVE_LOCK:
        return _ALIVE.setdefault(key, decoded)


def _decoded_record(data: bytes, index: int) -> CertRecord:
    try:
        msg = pb.Record.FromString(data)
    except DecodeError as e:
        raise MalformedSnapshot(f"record {index} does not parse ({bounded(e)})") from e
    return _record_from_pb(msg, index)


def to_chunks(
    env: Envelope, chunk_size: int = DEFAULT_CHUNK_SIZE, full: bytes = b""
) -> Iterator[pb.SnapshotChunk]:
    """`full` (a served delta's whole set) and the payload as chunks of at most `chunk_size`
    bytes, then the trailer."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, len(full), chunk_size):
        yield pb.SnapshotChunk(full=full[start : start + chunk_size])
    for start in range(0, len(env.payload), chunk_size):
        yield pb.SnapshotChunk(data=env.payload[start : start + chunk_size])
    trailer = pb.SnapshotTrailer(
        total_length=len(env.payload),
        payload_sha256=hashlib.sha256(env.payload).digest(),
        payload_type=env.payload_type,
        signatures=[pb.Signature(keyid=s.keyid, sig=s.sig) for s in env.signatures],
    )
    if full:
        trailer.full_length = len(full)
        trailer.full_sha256 = hashlib.sha256(full).digest()
    yield pb.SnapshotChunk(trailer=trailer)


def from_chunks(chunks: Iterable[pb.SnapshotChunk], max_bytes: int) -> Envelope:
    """Reassemble a pushed snapshot, refusing anything incomplete or over `max_bytes`, or
    carrying a whole set (only a served one does).

    The size limit is checked before each chunk is buffered, so a sender cannot make the
    receiver hold more than `max_bytes` of payload; the payload is the buffer itself, never a
    second copy of it (BytesIO.getvalue hands over its buffer). The signatures are not checked
    here.
    """
    served = served_from_chunks(chunks, max_bytes, whole_set=False)
    return Envelope(served.payload_type, served.payload, served.signatures)


def served_from_chunks(
    chunks: Iterable[pb.SnapshotChunk], max_bytes: int, *, whole_set: bool = True
) -> Served:
    """Reassemble a served snapshot and the whole set that may come with it; neither may
    pass `max_bytes`."""
    buffers = {"data": io.BytesIO(), "full": io.BytesIO()}
    trailer: pb.SnapshotTrailer | None = None
    for index, chunk in enumerate(chunks):
        if trailer is not None:
            raise IncompleteStream(f"chunk {index} follows the trailer")
        part = chunk.WhichOneof("part")
        if part == "trailer":
            trailer = chunk.trailer
        elif part == "data" or (part == "full" and whole_set):
            data = chunk.data if part == "data" else chunk.full
            if not data:  # costs nothing, yet would keep an idle stream alive
                raise IncompleteStream(f"chunk {index} carries no data")
            # Each at most max_bytes: a whole set the exchange accepted is within its limit,
            # and the delta it comes with too.
            _check_room(buffers[part].tell(), len(data), max_bytes)
            buffers[part].write(data)
        elif part == "full":
            raise IncompleteStream(f"chunk {index} carries a whole set, which a push never does")
        else:
            raise IncompleteStream(f"chunk {index} carries neither data nor a trailer")
    if trailer is None:
        raise IncompleteStream(
            f"stream ended after {buffers['data'].tell()} bytes without a trailer"
        )
    payload, full = (buffer.getvalue() for buffer in buffers.values())
    for buffer in buffers.values():
        buffer.close()
    _check_trailer(payload, trailer)
    _check_full(full, trailer)
    sigs = tuple(Sig(s.keyid, s.sig) for s in trailer.signatures)
    return Served(trailer.payload_type, payload, sigs, full=full)


def _check_full(full: bytes, trailer: pb.SnapshotTrailer) -> None:
    if trailer.full_length != len(full):
        raise IncompleteStream(
            f"received {len(full)} bytes of the whole set but the trailer announces "
            f"{trailer.full_length}"
        )
    if full and trailer.full_sha256 != hashlib.sha256(full).digest():
        raise IncompleteStream("the whole set's SHA-256 differs from the trailer's")


def _check_room(held: int, incoming: int, max_bytes: int) -> None:
    if held + incoming > max_bytes:
        raise StreamTooLarge(f"snapshot stream exceeds the limit of {max_bytes} bytes")


def _check_trailer(payload: bytes, trailer: pb.SnapshotTrailer) -> None:
    if trailer.total_length != len(payload):
        raise IncompleteStream(
            f"received {len(payload)} bytes but the trailer announces {trailer.total_length}"
        )
    digest = hashlib.sha256(payload).digest()
    if trailer.payload_sha256 != digest:
        raise IncompleteStream(
            f"payload SHA-256 {digest.hex()} differs from the trailer's "
            f"{bounded(trailer.payload_sha256.hex())}"
        )


def _refuse_duplicates(ordered: Sequence[CertRecord]) -> None:
    shas = list(map(_SHA256, ordered))
    if len(set(shas)) == len(shas):  # in C: 100,000 records each cycle
        return
    for before, after in pairwise(shas):
        if before == after:
            raise ValueError(f"record {after} appears twice; merge the inventory first")


def _header_from_pb(msg: pb.SnapshotHeader) -> SnapshotHeader:
    _require(msg.party, "header has no party")
    _require(msg.pairing, "header has no pairing")
    if msg.role not in _ROLE_FROM_PB:
        raise MalformedSnapshot(f"header has unknown role {msg.role}")
    if msg.version < 1:
        raise VersionOutOfRangeError("header version is 0; versions start at 1")
    if msg.version > MAX_VERSION:
        raise VersionOutOfRangeError(
            f"header version {msg.version} is above the largest version {MAX_VERSION} (2^63 - 1)"
        )
    _require(msg.HasField("issued_at"), "header has no issued_at")
    _require(msg.HasField("expires_at"), "header has no expires_at")
    return SnapshotHeader(
        party=msg.party,
        pairing=msg.pairing,
        role=_ROLE_FROM_PB[msg.role],
        version=msg.version,
        issued_at=_header_time(msg, "issued_at"),
        expires_at=_header_time(msg, "expires_at"),
        previous_digest=msg.previous_digest,
        record_count=msg.record_count,
        records_digest=msg.records_digest,
        scope_issuer_spki=tuple(msg.scope_issuer_spki),
        profiles=tuple(_profile_from_pb(p) for p in msg.profiles),
        acknowledgements=tuple(_ack_from_pb(a, i) for i, a in enumerate(msg.acknowledgements)),
        next_signing_key=msg.next_signing_key,
        log_checkpoint=msg.log_checkpoint,
        delta=msg.delta,
        records_root=msg.records_root,
    )


def _header_time(msg: pb.SnapshotHeader, field: str) -> datetime:
    try:
        return from_timestamp(getattr(msg, field), f"header {field}")
    except ValueError as e:
        raise MalformedSnapshot(str(e)) from e


def _ack_to_pb(ack: Acknowledgement) -> pb.Acknowledgement:
    return pb.Acknowledgement(
        code=ack.code,
        sha256=ack.sha256,
        reason=ack.reason,
        acknowledged_at=timestamp(ack.acknowledged_at),
        expires_at=timestamp(ack.expires_at),
    )


def _ack_from_pb(msg: pb.Acknowledgement, index: int) -> Acknowledgement:
    where = f"header acknowledgement {index}"
    _require(msg.HasField("acknowledged_at"), f"{where} has no acknowledged_at")
    _require(msg.HasField("expires_at"), f"{where} has no expires_at")
    try:
        return Acknowledgement(
            code=msg.code,
            sha256=msg.sha256,
            reason=msg.reason,
            acknowledged_at=from_timestamp(msg.acknowledged_at, "acknowledged_at"),
            expires_at=from_timestamp(msg.expires_at, "expires_at"),
        )
    except ValueError as e:
        raise MalformedSnapshot(f"{where}: {bounded(e)}") from e


def _profile_to_pb(profile: OperatorProfile) -> pb.OperatorProfile:
    msg = pb.OperatorProfile(
        operator=profile.operator,
        serial_bytes=profile.serial_bytes or 0,
        allowed_ekus=profile.allowed_ekus,
        max_validity_days=profile.max_validity_days or 0,
    )
    # Unset when not declared: a profile without dates encodes as it did before them.
    if profile.effective_from is not None:
        msg.effective_from.CopyFrom(timestamp(profile.effective_from))
    if profile.effective_until is not None:
        msg.effective_until.CopyFrom(timestamp(profile.effective_until))
    return msg


def _profile_from_pb(msg: pb.OperatorProfile) -> OperatorProfile:
    start = msg.effective_from if msg.HasField("effective_from") else None
    end = msg.effective_until if msg.HasField("effective_until") else None
    return OperatorProfile(
        operator=msg.operator,
        serial_bytes=msg.serial_bytes or None,
        allowed_ekus=tuple(msg.allowed_ekus),
        max_validity_days=msg.max_validity_days or None,
        effective_from=from_timestamp(start, "effective_from") if start is not None else None,
        effective_until=from_timestamp(end, "effective_until") if end is not None else None,
    )


def _record_from_pb(msg: pb.Record, index: int) -> CertRecord:
    try:
        return record_from_pb(msg, index)
    except ValueError as e:
        raise MalformedSnapshot(str(e)) from e


def _require(condition: object, message: str) -> None:
    if not condition:
        raise MalformedSnapshot(message)
