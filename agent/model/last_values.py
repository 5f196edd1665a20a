"""Values derived from records, kept from the last call and reused (issue 13).

A daemon's steady cycle collects, stores and sends the same records as the cycle before, and
deriving from 100,000 records what 100 changed records need was a third of its work. A record
is met again as a new object (its sources' last sighting moves every cycle), so what is kept is
keyed by SHA-256, with the record it was derived from, and reused only for a record with the
very CertInfo object (which holds every value read from its DER) whose other fields the value is
made of are equal (`Same`). Only the last call's records are kept, so what is held stays the
size of one inventory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from invsync.agent.model.record import CertRecord, Revocation, SourceRef

V = TypeVar("V")
Same = Callable[[CertRecord, CertRecord], bool]


class LastValues(Generic[V]):
    def __init__(self, same: Same) -> None:
        self._same = same
        self._kept: dict[str, tuple[CertRecord, V]] = {}

    def of(self, records: Sequence[CertRecord], derive: Callable[[CertRecord], V]) -> list[V]:
        """`derive(record)` of each record, reused from the last call where it holds the same
        certificate and content; these records are then the ones kept."""
        same, kept, now = self._same, self._kept, {}
        out = []
        for record in records:
            sha256 = record.info.sha256
            held = kept.get(sha256)
            if held is not None and held[0].info is record.info and same(held[0], record):
                value = held[1]
            else:
                value = derive(record)
            now[sha256] = (record, value)
            out.append(value)
        self._kept = now
        return out

    def forget(self) -> None:
        """Keep nothing (the store was closed, or a benchmark starts afresh)."""
        self._kept = {}

    def __len__(self) -> int:
        return len(self._kept)


def same_stored(a: CertRecord, b: CertRecord) -> bool:
    """Whether two records of one CertInfo have the same fields but their sources: what a
    certificate row holds beside the DER (agent.store.agent_store, where the sources have a
    table of their own)."""
    return (
        a.operator == b.operator
        and a.lifecycle == b.lifecycle
        and a.attribution == b.attribution
        and _same_revocation(a.revocation, b.revocation)
        and a.disclosure == b.disclosure
        and a.audit_scope == b.audit_scope
        and len(a.revocation_evidence) == len(b.revocation_evidence)
        and all(map(_same_revocation, a.revocation_evidence, b.revocation_evidence))
    )


def same_sent(a: CertRecord, b: CertRecord) -> bool:
    """`same_stored`, and the same sources but for their last sighting, which the wire form of a
    record leaves out (agent.exchange.record_codec)."""
    return (
        same_stored(a, b)
        and len(a.sources) == len(b.sources)
        and all(map(_same_source, a.sources, b.sources))
    )


def _same_revocation(a: Revocation | None, b: Revocation | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b and _same_fold(a.revoked_at, b.revoked_at)


def _same_source(a: SourceRef, b: SourceRef) -> bool:
    return (
        a.kind == b.kind
        and a.location == b.location
        and a.first_seen == b.first_seen
        and _same_fold(a.first_seen, b.first_seen)
    )


def _same_fold(a: datetime, b: datetime) -> bool:
    """For two times that compare equal, whether they also name one instant as far as can be
    told cheaply. In one daylight-saving zone times compare by their clock reading alone, an
    hour apart when only their `fold` differs; so a differing fold counts as another instant (at
    worst a value is derived again). A naive and an aware time never compare equal."""
    return a.fold == b.fold
