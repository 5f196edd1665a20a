"""Values derived from records, kept from the last call and reused (issue 13).

A daemon's steady cycle collects, stores and sends the same records as the cycle before, and
deriving from 100,000 records what 100 changed records need was a third of its work. A record
is met again as a new object (its sources' last sighting moves every cycle), so what is kept is
keyed by SHA-256 and reused only for a record with the very CertInfo object (which holds every
value read from its DER) and equal `content`: the fields the derived value is made of. Only
the last call's records are kept, so what is held stays the size of one inventory.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

from invsync.agent.model.record import CertInfo, CertRecord

V = TypeVar("V")
Content = Callable[[CertRecord], tuple[Hashable, ...]]


class LastValues(Generic[V]):
    def __init__(self, content: Content) -> None:
        self._content = content
        self._kept: dict[str, tuple[CertInfo, tuple[Hashable, ...], V]] = {}

    def of(self, records: Sequence[CertRecord], derive: Callable[[CertRecord], V]) -> list[V]:
        """`derive(record)` of each record, reused from the last call where it holds the same
        certificate and content; these records are then the ones kept."""
        content, kept, now = self._content, self._kept, {}
        out = []
        for record in records:
            key = content(record)
            held = kept.get(record.sha256)
            if held is not None and held[0] is record.info and held[1] == key:
                value = held[2]
            else:
                value = derive(record)
            now[record.sha256] = (record.info, key, value)
            out.append(value)
        self._kept = now
        return out

    def forget(self) -> None:
        """Keep nothing (the store was closed, or a benchmark starts afresh)."""
        self._kept = {}

    def __len__(self) -> int:
        return len(self._kept)


def stored_content(record: CertRecord) -> tuple[Hashable, ...]:
    """Every field of a record but its certificate and sources: what a certificate row holds
    beside the DER (agent.store.agent_store, where the sources have a table of their own)."""
    revocation = record.revocation
    return (
        record.operator,
        record.lifecycle,
        revocation,
        _instant(revocation.revoked_at) if revocation else None,
        record.attribution,
        record.disclosure,
        record.audit_scope,
        record.revocation_evidence,
        tuple([_instant(r.revoked_at) for r in record.revocation_evidence]),
    )


def sent_content(record: CertRecord) -> tuple[Hashable, ...]:
    """What a record's wire form holds beside the DER: the stored content and each source
    without its last sighting (agent.exchange.record_codec)."""
    sources = tuple([(s.kind, s.location, _instant(s.first_seen)) for s in record.sources])
    return (*stored_content(record), sources)


def _instant(at: datetime) -> Hashable:
    """`at` as the one instant it names. Two times of one daylight-saving zone compare equal
    by their clock reading alone, an hour apart when only their `fold` differs; and a naive
    time (which every encoder refuses) is never equal to an aware one."""
    if at.tzinfo is UTC:
        return at
    return at.astimezone(UTC) if at.tzinfo is not None else ("naive", at)
