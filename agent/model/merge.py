"""One inventory out of many sources: records with the same SHA-256 are the same certificate.

Provenance accumulates; the party's view (operator, lifecycle, revocation) is taken from
whichever source states it. Two sources stating different values is an error, never a silent
pick: a CA certificate cannot have two answers to who operates it or when it was revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from invsync.agent.errors import SourceError
from invsync.agent.model.facts import AuditScopeEntry, Disclosure
from invsync.agent.model.record import SHA256_OF as _SHA256
from invsync.agent.model.record import CertInfo, CertRecord, Revocation, SourceRef
from invsync.agent.times import rfc3339

T = TypeVar("T")


@dataclass(frozen=True)
class _Stated(Generic[T]):
    """A value of the party's view and the source that stated it."""

    value: T
    source: str


@dataclass
class _Merging:
    info: CertInfo
    sources: dict[tuple[str, str], SourceRef] = field(default_factory=dict)
    operator: _Stated[str] | None = None
    lifecycle: _Stated[str] | None = None
    revoked_at: _Stated[datetime] | None = None
    reason: _Stated[str] | None = None
    # Facts a record may already carry (e.g. read back from the store) are kept, not dropped.
    attribution: str = ""
    disclosure: Disclosure | None = None
    audit_scope: tuple[AuditScopeEntry, ...] = ()
    evidence: tuple[Revocation, ...] = ()


def merge(records: Iterable[CertRecord]) -> list[CertRecord]:
    """Merge records by SHA-256, sorted by SHA-256; conflicting views raise SourceError (the
    certificates merged in the order each first appears, each one's records in input order)."""
    listed = list(records)
    if len(set(map(_SHA256, listed))) == len(listed):
        # Each certificate once (a collection of one source, every cycle): merged alone.
        return sorted([_merged([record]) for record in listed], key=_SHA256)
    by_sha: dict[str, list[CertRecord]] = {}
    for record in listed:
        by_sha.setdefault(record.info.sha256, []).append(record)
    merged = {sha: _merged(found) for sha, found in by_sha.items()}
    return [merged[sha] for sha in sorted(merged)]


def _merged(records: list[CertRecord]) -> CertRecord:
    if len(records) == 1 and _plain(records[0]):
        return records[0]  # what merging it alone gives (a test holds the two to each other)
    target = _Merging(records[0].info)
    for record in records:
        _add(target, record)
    return _result(target)


def _plain(record: CertRecord) -> bool:
    """A record that merging alone leaves as it is: its view already as merging states it (no
    empty operator or lifecycle, no revocation to restate) and nothing listed twice."""
    return (
        record.operator != ""
        and record.lifecycle != ""
        and record.revocation is None
        and all(
            type(listed) is tuple and len(listed) <= 1  # merging makes tuples of lists
            for listed in (record.sources, record.audit_scope, record.revocation_evidence)
        )
    )


def _add(target: _Merging, record: CertRecord) -> None:
    for ref in record.sources:
        key = (ref.kind, ref.location)
        known = target.sources.get(key)
        target.sources[key] = ref if known is None else _widen(known, ref)
    sha, source = record.sha256, _describe(record)
    target.operator = _agree(sha, "operator", target.operator, record.operator or None, source)
    target.lifecycle = _agree(sha, "lifecycle", target.lifecycle, record.lifecycle or None, source)
    _keep_facts(target, record)
    revocation = record.revocation
    if revocation is not None:
        at, reason, said = revocation.revoked_at, revocation.reason, revocation.source
        target.revoked_at = _agree(sha, "revocation time", target.revoked_at, at, said)
        target.reason = _agree(sha, "revocation reason", target.reason, reason or None, said)


def _keep_facts(target: _Merging, record: CertRecord) -> None:
    target.attribution = target.attribution or record.attribution
    target.disclosure = target.disclosure or record.disclosure
    target.audit_scope += tuple(a for a in record.audit_scope if a not in target.audit_scope)
    target.evidence += tuple(r for r in record.revocation_evidence if r not in target.evidence)


def _agree(
    sha: str, name: str, known: _Stated[T] | None, value: T | None, source: str
) -> _Stated[T] | None:
    if value is None:
        return known
    if known is None:
        return _Stated(value, source)
    if known.value != value:
        raise SourceError(
            f"certificate {sha}: sources disagree on {name}:"
            f" {_show(known.value)} ({known.source}) vs {_show(value)} ({source})"
        )
    return known


def _show(value: object) -> str:
    return rfc3339(value) if isinstance(value, datetime) else repr(value)


def _widen(known: SourceRef, ref: SourceRef) -> SourceRef:
    # The same source seen twice was seen from the earliest first to the latest last sighting.
    first = min(known.first_seen, ref.first_seen)
    return SourceRef(known.kind, known.location, first, max(known.last_seen, ref.last_seen))


def _describe(record: CertRecord) -> str:
    return ", ".join(f"{ref.kind}:{ref.location}" for ref in record.sources) or "no source"


def _result(merged: _Merging) -> CertRecord:
    return CertRecord(
        merged.info,
        operator=_value(merged.operator),
        lifecycle=_value(merged.lifecycle),
        revocation=_revocation(merged),
        sources=tuple(merged.sources.values()),
        attribution=merged.attribution,
        disclosure=merged.disclosure,
        audit_scope=merged.audit_scope,
        revocation_evidence=merged.evidence,
    )


def _value(stated: _Stated[T] | None) -> T | None:
    return None if stated is None else stated.value


def _revocation(merged: _Merging) -> Revocation | None:
    if merged.revoked_at is None:
        return None
    reason = merged.reason.value if merged.reason else ""
    return Revocation(merged.revoked_at.value, reason, merged.revoked_at.source)
