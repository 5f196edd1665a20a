"""What both parties' signed snapshots say of an incident's certificates: the first snapshot of
each party that held each one, and the first that recorded it revoked.

Read from an agent's database: its own snapshots as it signed and sent them (every payload is
kept) and its peer's as it verified them (the latest two are kept, so a peer's "first" is the
first of those). Each event names the snapshot (party, version, payload SHA-256) and the time
its header was signed; never a source file or the time a source was imported, which are the
party's local facts and prove nothing to a reader of the incident.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.exchange.delta import accepted_header, identity_of, read_parts
from invsync.agent.exchange.record_codec import from_timestamp, record_from_pb
from invsync.agent.model.record import Revocation
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb


@dataclass(frozen=True)
class SnapshotMark:
    """A signed snapshot as evidence: whose, which version, its payload's SHA-256 (lowercase
    hex) and when its header says it was signed."""

    party: str
    version: int
    digest: str
    issued_at: datetime


@dataclass(frozen=True)
class Sighting:
    """`sha256` held by the snapshot `mark`: first held (`revoked` None), or first recorded
    revoked (`revoked` the revocation as the record states it)."""

    sha256: str
    mark: SnapshotMark
    revoked: Revocation | None = None


def sightings(store: AgentStore, pairing: str, shas: frozenset[str]) -> list[Sighting]:
    """For each party of `pairing` whose snapshots `store` keeps, the first snapshot holding
    each of `shas` and the first recording it revoked."""
    found: list[Sighting] = []
    for payloads in (_own(store, pairing), _peer(store, pairing)):
        found += _first(payloads, shas)
    return found


def _own(store: AgentStore, pairing: str) -> Iterator[bytes]:
    latest = store.latest_sent_snapshot(pairing)
    for version in range(1, latest.version + 1 if latest else 1):
        sent = store.sent_snapshot(pairing, version)
        if sent is not None:
            yield sent.payload


def _peer(store: AgentStore, pairing: str) -> Iterator[bytes]:
    peer = store.trusted_state(pairing).peer
    for version in range(1, peer.version + 1 if peer else 1):
        served = store.peer_snapshot(pairing, version)
        if served is not None:
            yield served.payload


def _first(payloads: Iterator[bytes], shas: frozenset[str]) -> list[Sighting]:
    held: dict[str, Sighting] = {}
    revoked: dict[str, Sighting] = {}
    for payload in payloads:
        mark = _mark(payload)
        for sha, revocation in _records(payload, shas):
            held.setdefault(sha, Sighting(sha, mark))
            if revocation is not None:
                revoked.setdefault(sha, Sighting(sha, mark, revocation))
        if len(revoked) == len(shas):
            break
    return [*held.values(), *revoked.values()]


def _mark(payload: bytes) -> SnapshotMark:
    header = accepted_header(payload)
    digest = hashlib.sha256(payload).hexdigest()
    return SnapshotMark(header.party, header.version, digest, from_timestamp(header.issued_at))


def _records(payload: bytes, shas: frozenset[str]) -> Iterator[tuple[str, Revocation | None]]:
    """Each of `shas` the payload carries (a delta carries those it adds or changes), with the
    revocation its record states."""
    for index, data in enumerate(read_parts(payload).records):
        sha = identity_of(data, index).hex().upper()
        if sha in shas:
            yield sha, record_from_pb(pb.Record.FromString(data), index).revocation
