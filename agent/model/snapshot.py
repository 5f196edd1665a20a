"""A verified snapshot, as the reconciler and the report see it (DESIGN §5).

These are plain values decoded from a payload whose signature was already checked; the wire
form is `invsync.v1.SnapshotPayload`, decoded by `agent.exchange.snapshot.decode_payload`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertRecord

ROOT = "root"
SUBORDINATE = "subordinate"


@dataclass(frozen=True)
class SnapshotHeader:
    party: str
    pairing: str
    role: str  # ROOT or SUBORDINATE
    version: int
    issued_at: datetime
    expires_at: datetime
    previous_digest: bytes  # empty for a party's first snapshot of the pairing
    record_count: int
    records_digest: bytes
    scope_issuer_spki: tuple[bytes, ...]
    profiles: tuple[OperatorProfile, ...] = ()
    acknowledgements: tuple[Acknowledgement, ...] = ()
    next_signing_key: bytes = b""  # SubjectPublicKeyInfo DER of an announced key; empty: none
    # The latest log checkpoint the party's agent verified (a signed note, as the server served
    # it); empty before its first. Opened only with the pinned server key (agent.daemon.log_watch).
    log_checkpoint: bytes = b""
    delta: bool = False  # the payload holds the changes since previous_digest's snapshot
    records_root: bytes = b""  # Merkle root over whole records; empty in older snapshots


@dataclass(frozen=True)
class Snapshot:
    header: SnapshotHeader
    records: tuple[CertRecord, ...]
    payload_sha256: str  # lowercase hex SHA-256 of the exact signed payload bytes
    # The whole set as a full payload under the signed header: the payload itself for a full
    # snapshot, rebuilt or served for a delta (agent.exchange.delta); what a delta builds on.
    full: bytes = field(default=b"", repr=False, compare=False)
    # Each record's identity (its certificate's SHA-256, 32 bytes), in the records' order, when
    # the decoder worked them out (empty when not): the checks that follow a decode take them
    # from here instead of reading every record again (issue 13).
    identities: tuple[bytes, ...] = field(default=(), repr=False, compare=False)


@dataclass(frozen=True)
class Side:
    """One party's records in scope of a pairing: what the reconciler compares.

    `header` is the snapshot's header (its times for `stale-peer`, its declared profiles for
    `profile-deviation`), None for an offline comparison of plain lists. `previous` is the records
    of the party's previous accepted snapshot of the pairing (for `disappeared`), None when there
    is none or the caller does not know it. `max_age` is how old the party's snapshot may be
    before it counts as stale, None for no limit beyond its own expiry.
    """

    party: str
    records: Sequence[CertRecord]
    header: SnapshotHeader | None = None
    previous: tuple[CertRecord, ...] | None = None
    max_age: timedelta | None = None

    @classmethod
    def of(
        cls,
        snapshot: Snapshot,
        previous: Snapshot | None = None,
        max_age: timedelta | None = None,
    ) -> Side:
        return cls(
            snapshot.header.party,
            snapshot.records,
            header=snapshot.header,
            previous=None if previous is None else previous.records,
            max_age=max_age,
        )
