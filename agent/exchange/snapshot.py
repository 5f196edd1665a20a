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
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import pairwise

from google.protobuf.message import DecodeError

from invsync.agent.errors import bounded
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.merkle import records_digest
from invsync.agent.exchange.record_codec import (
    from_timestamp,
    record_from_pb,
    record_to_pb,
    timestamp,
)
from invsync.agent.exchange.rejections import (
    IncompleteStream,
    MalformedSnapshot,
    StreamTooLarge,
    VersionOutOfRangeError,
)
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Snapshot, SnapshotHeader
from invsync.v1 import invsync_pb2 as pb

SNAPSHOT_PAYLOAD_TYPE = "application/vnd.invsync.snapshot.v1+protobuf"
# The largest version: what SQLite's INTEGER (the store) holds; the wire's uint64 holds more.
MAX_VERSION = (1 << 63) - 1
DEFAULT_CHUNK_SIZE = 256 * 1024  # bytes; well under gRPC's 4 MiB default message limit

_ROLE_TO_PB = {ROOT: pb.ROLE_ROOT, SUBORDINATE: pb.ROLE_SUBORDINATE}
_ROLE_FROM_PB = {v: k for k, v in _ROLE_TO_PB.items()}


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
    """A serialized SnapshotPayload: records sorted by identity, count and Merkle digest set.

    `role` is "root" or "subordinate"; `previous_digest` is the raw SHA-256 of the previous
    accepted payload (empty for the first); `next_signing_key` is the SubjectPublicKeyInfo DER
    of a key the party announces (agent.exchange.keyring), which must then sign the envelope too;
    `log_checkpoint` is the signed note of the latest log checkpoint the party verified (b"": none).
    Raises ValueError on a caller bug: an unknown role, a naive datetime, or two records with
    one identity (the inventory merges those).
    """
    if role not in _ROLE_TO_PB:
        raise ValueError(f"role must be {ROOT!r} or {SUBORDINATE!r}, got {role!r}")
    ordered = sorted(records, key=lambda r: r.sha256)
    _refuse_duplicates(ordered)
    header = pb.SnapshotHeader(
        party=party,
        pairing=pairing,
        role=_ROLE_TO_PB[role],
        version=version,
        issued_at=timestamp(issued_at),
        expires_at=timestamp(expires_at),
        previous_digest=previous_digest,
        record_count=len(ordered),
        records_digest=records_digest(r.sha256 for r in ordered),
        scope_issuer_spki=scope_issuer_spki,
        profiles=[_profile_to_pb(p) for p in profiles],
        acknowledgements=[_ack_to_pb(a) for a in acknowledgements],
        next_signing_key=next_signing_key,
        log_checkpoint=log_checkpoint,
    )
    msg = pb.SnapshotPayload(header=header, records=[record_to_pb(r) for r in ordered])
    serialized: bytes = msg.SerializeToString(deterministic=True)
    return serialized


def sign_snapshot(payload: bytes, key: SigningKey) -> Envelope:
    """An envelope of type SNAPSHOT_PAYLOAD_TYPE over `payload`, signed by `key`."""
    return envelope.sign(SNAPSHOT_PAYLOAD_TYPE, payload, [key])


def decode_payload(payload: bytes) -> Snapshot:
    """Decode payload bytes whose signature was already verified into a Snapshot.

    The header's record_count and records_digest are returned as claimed;
    `agent.exchange.acceptance` compares them with the records. Raises MalformedSnapshot naming the
    field or record index.
    """
    try:
        msg = pb.SnapshotPayload.FromString(payload)
    except DecodeError as e:
        raise MalformedSnapshot(f"payload is not a SnapshotPayload ({bounded(e)})") from e
    if not msg.HasField("header"):
        raise MalformedSnapshot("payload has no header")
    header = _header_from_pb(msg.header)
    records = tuple(_record_from_pb(r, i) for i, r in enumerate(msg.records))
    return Snapshot(header, records, hashlib.sha256(payload).hexdigest())


def to_chunks(env: Envelope, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pb.SnapshotChunk]:
    """The payload as data chunks of at most `chunk_size` bytes, then the trailer."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    for start in range(0, len(env.payload), chunk_size):
        yield pb.SnapshotChunk(data=env.payload[start : start + chunk_size])
    trailer = pb.SnapshotTrailer(
        total_length=len(env.payload),
        payload_sha256=hashlib.sha256(env.payload).digest(),
        payload_type=env.payload_type,
        signatures=[pb.Signature(keyid=s.keyid, sig=s.sig) for s in env.signatures],
    )
    yield pb.SnapshotChunk(trailer=trailer)


def from_chunks(chunks: Iterable[pb.SnapshotChunk], max_bytes: int) -> Envelope:
    """Reassemble a streamed snapshot, refusing anything incomplete or over `max_bytes`.

    The size limit is checked before each chunk is buffered, so a sender cannot make the
    receiver hold more than `max_bytes` of payload; the payload is the buffer itself, never a
    second copy of it (BytesIO.getvalue hands over its buffer). The signatures are not checked
    here.
    """
    buffer = io.BytesIO()
    trailer: pb.SnapshotTrailer | None = None
    for index, chunk in enumerate(chunks):
        if trailer is not None:
            raise IncompleteStream(f"chunk {index} follows the trailer")
        part = chunk.WhichOneof("part")
        if part == "trailer":
            trailer = chunk.trailer
        elif part == "data":
            if not chunk.data:  # costs nothing, yet would keep an idle stream alive
                raise IncompleteStream(f"chunk {index} carries no data")
            _check_room(buffer.tell(), len(chunk.data), max_bytes)
            buffer.write(chunk.data)
        else:
            raise IncompleteStream(f"chunk {index} carries neither data nor a trailer")
    if trailer is None:
        raise IncompleteStream(f"stream ended after {buffer.tell()} bytes without a trailer")
    payload = buffer.getvalue()
    buffer.close()
    _check_trailer(payload, trailer)
    sigs = tuple(Sig(s.keyid, s.sig) for s in trailer.signatures)
    return Envelope(trailer.payload_type, payload, sigs)


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
    for before, after in pairwise(ordered):
        if before.sha256 == after.sha256:
            raise ValueError(f"record {after.sha256} appears twice; merge the inventory first")


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
    return pb.OperatorProfile(
        operator=profile.operator,
        serial_bytes=profile.serial_bytes or 0,
        allowed_ekus=profile.allowed_ekus,
        max_validity_days=profile.max_validity_days or 0,
    )


def _profile_from_pb(msg: pb.OperatorProfile) -> OperatorProfile:
    return OperatorProfile(
        operator=msg.operator,
        serial_bytes=msg.serial_bytes or None,
        allowed_ekus=tuple(msg.allowed_ekus),
        max_validity_days=msg.max_validity_days or None,
    )


def _record_from_pb(msg: pb.Record, index: int) -> CertRecord:
    try:
        return record_from_pb(msg, index)
    except ValueError as e:
        raise MalformedSnapshot(str(e)) from e


def _require(condition: object, message: str) -> None:
    if not condition:
        raise MalformedSnapshot(message)
