"""A verified snapshot, as the reconciler and the report see it (DESIGN §5).

These are plain values decoded from a payload whose signature was already checked; the wire
form is `invsync.v1.SnapshotPayload`, decoded by `agent.snapshot.decode_payload`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.profiles import OperatorProfile
from agent.record import CertRecord

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


@dataclass(frozen=True)
class Snapshot:
    header: SnapshotHeader
    records: tuple[CertRecord, ...]
    payload_sha256: str  # lowercase hex SHA-256 of the exact signed payload bytes


@dataclass(frozen=True)
class Side:
    """One party's records in scope of a pairing: what the reconciler compares."""

    party: str
    records: Sequence[CertRecord]

    @classmethod
    def of(cls, snapshot: Snapshot) -> Side:
        return cls(snapshot.header.party, snapshot.records)
