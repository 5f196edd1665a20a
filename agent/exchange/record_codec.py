"""A record and its facts on the wire (`invsync.v1.Record`) and back.

Decoding raises ValueError with a message naming the field; `agent.exchange.snapshot` turns it into
a MalformedSnapshot naming the record.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from invsync.agent.errors import bounded
from invsync.agent.exchange.delta import varint
from invsync.agent.kept import Kept
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, CcadbAudit, Disclosure
from invsync.agent.model.record import (
    LIFECYCLES,
    REVOCATION_REASONS,
    CertRecord,
    Revocation,
    SourceRef,
)
from invsync.agent.model.record import parse_certificate as _parse
from invsync.v1 import invsync_pb2 as pb

_TRI_TO_PB = {None: pb.TRI_STATE_UNKNOWN, True: pb.TRI_STATE_TRUE, False: pb.TRI_STATE_FALSE}
_TRI_FROM_PB = {v: k for k, v in _TRI_TO_PB.items()}


def timestamp(at: datetime) -> Timestamp:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at.isoformat()}; use a timezone-aware UTC time")
    ts = Timestamp()
    # In UTC first: FromDatetime drops the fraction of a second of a UTC offset that has one.
    ts.FromDatetime(at.astimezone(UTC))
    return ts


# What a Timestamp may hold (google/protobuf/timestamp.proto): 0001-01-01 to 9999-12-31 UTC.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


def from_timestamp(ts: Timestamp, where: str = "timestamp") -> datetime:
    """The UTC time `ts` holds; ValueError naming `where` when it holds none (out of range)."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        raise ValueError(
            f"{where}: seconds {ts.seconds} is outside 0001-01-01 to 9999-12-31 (not a time)"
        )
    if not 0 <= ts.nanos < 1_000_000_000:
        raise ValueError(f"{where}: nanos {ts.nanos} is outside 0 to 999999999")
    return _utc(ts.seconds, ts.nanos)


@lru_cache(maxsize=4096)
def _utc(seconds: int, nanos: int) -> datetime:
    """One datetime per time: a snapshot's records mostly share a few (every source read in
    one collection was first seen at its start), and a datetime is immutable."""
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_to_pb(record: CertRecord) -> pb.Record:
    msg = pb.Record(
        certificate_der=record.info.der,
        operator=record.operator or "",
        lifecycle=record.lifecycle or "",
        sources=[_source_to_pb(s) for s in record.sources],
        audit_scope=[_audit_entry_to_pb(a) for a in record.audit_scope],
        revocation_evidence=[revocation_to_pb(r) for r in record.revocation_evidence],
        attribution=record.attribution,
    )
    if record.revocation is not None:
        msg.revocation.CopyFrom(revocation_to_pb(record.revocation))
    if record.disclosure is not None:
        msg.disclosure.CopyFrom(_disclosure_to_pb(record.disclosure))
    return msg


def record_bytes(record: CertRecord) -> bytes:
    """`record_to_pb(record)` serialized deterministically. A record of the common shape (no
    revocation, public view, audit scope or evidence) is joined here from its fields and its
    sources' bytes, as protobuf writes it: building each message copied the DER and every
    source into it first, a fifth of a snapshot's build at 100,000 records (issue 13). A
    Hypothesis test holds both ways to the same bytes."""
    if not _common_shape(record):
        data: bytes = record_to_pb(record).SerializeToString(deterministic=True)
        return data
    der = record.info.der
    pieces = [b"\x0a", varint(len(der)), der]
    for tag, text in ((b"\x12", record.operator), (b"\x1a", record.lifecycle)):
        if text:
            _text_field(pieces, tag, text)
    for source in record.sources:
        encoded = _source_bytes(source)
        pieces += (b"\x2a", varint(len(encoded)), encoded)
    if record.attribution:
        _text_field(pieces, b"\x4a", record.attribution)
    return b"".join(pieces)


def _common_shape(record: CertRecord) -> bool:
    """Most records: no revocation, public view, audit scope or revocation evidence."""
    return (
        record.revocation is None
        and record.disclosure is None
        and not record.audit_scope
        and not record.revocation_evidence
    )


def _text_field(pieces: list[bytes], tag: bytes, text: str) -> None:
    encoded = text.encode()
    pieces += (tag, varint(len(encoded)), encoded)


def _source_bytes(source: SourceRef) -> bytes:
    key = (source.kind, source.location, _utc_key(source.first_seen))
    encoded = _SOURCE_BYTES.get(key)
    if encoded is None:
        data: bytes = _source_to_pb(source).SerializeToString(deterministic=True)
        encoded = _SOURCE_BYTES.keep(key, data)
    return encoded


_SOURCE_BYTES: Kept[tuple[str, str, object], bytes] = Kept()


def record_from_pb(msg: pb.Record, index: int) -> CertRecord:
    try:
        info = _parse(msg.certificate_der)
    except ValueError as e:
        raise ValueError(f"record {index}: certificate DER does not parse ({bounded(e)})") from e
    where = f"record {index} ({info.sha256})"
    if msg.lifecycle and msg.lifecycle not in LIFECYCLES:
        raise ValueError(f"{where}: unknown lifecycle {bounded(msg.lifecycle)!r}")
    return CertRecord(
        info=info,
        operator=msg.operator or None,
        lifecycle=msg.lifecycle or None,
        revocation=_revocation_from_pb(msg.revocation, where)
        if msg.HasField("revocation")
        else None,
        sources=tuple([_shared_source(s, where, i) for i, s in enumerate(msg.sources)]),
        attribution=msg.attribution,
        disclosure=_disclosure_from_pb(msg.disclosure, info.sha256, where)
        if msg.HasField("disclosure")
        else None,
        # Most records have neither: no generator is made for an empty field.
        audit_scope=tuple(_audit_entry_from_pb(a, info.sha256, where) for a in msg.audit_scope)
        if msg.audit_scope
        else (),
        revocation_evidence=tuple(
            _revocation_from_pb(r, f"{where} evidence {i}")
            for i, r in enumerate(msg.revocation_evidence)
        )
        if msg.revocation_evidence
        else (),
    )


# Sources decoded, by their serialized bytes: a snapshot's records mostly name the same few
# (one per source file, first seen at one collection), and a SourceRef is immutable. Bounded:
# emptied when full, so hostile input costs at most this many entries.
_SOURCES: Kept[bytes, SourceRef] = Kept()


def _shared_source(msg: pb.SourceRef, where: str, index: int) -> SourceRef:
    """`_source_from_pb`, once per distinct source (issue 13: it was a third of a record's
    decoding); only a source that decodes is kept, so every error is raised as before."""
    key = msg.SerializeToString(deterministic=True)
    source = _SOURCES.get(key)
    if source is None:
        source = _SOURCES.keep(key, _source_from_pb(msg, f"{where} source {index}"))
    return source


def wire_view(record: CertRecord) -> CertRecord | None:
    """`record_from_pb(record_to_pb(record), i)` made without encoding and decoding, for a
    record of the common shape: no revocation, public view, audit scope or revocation evidence,
    and a known lifecycle or none. None for any other record, which is decoded instead.

    What the wire keeps of such a record: its certificate (the CertInfo alive for its DER, as
    `parse_certificate` gives it), operator and lifecycle with "" read as None, attribution, and
    each source without its last sighting (taken as its first, in UTC). A test holds this equal
    to the round trip on generated records."""
    if not _common_shape(record) or (record.lifecycle and record.lifecycle not in LIFECYCLES):
        return None
    return CertRecord(
        info=record.info,
        operator=record.operator or None,
        lifecycle=record.lifecycle or None,
        sources=tuple([_wire_source(s) for s in record.sources]),
        attribution=record.attribution,
    )


def _wire_source(source: SourceRef) -> SourceRef:
    key = (source.kind, source.location, _utc_key(source.first_seen))
    sent = _WIRE_SOURCES.get(key)
    if sent is None:
        first = source.first_seen.astimezone(UTC).replace(fold=0)  # as a Timestamp decodes
        sent = _WIRE_SOURCES.keep(key, SourceRef(source.kind, source.location, first, first))
    return sent


_WIRE_SOURCES: Kept[tuple[str, str, object], SourceRef] = Kept()


def revocation_to_pb(revocation: Revocation) -> pb.Revocation:
    return pb.Revocation(
        revoked_at=timestamp(revocation.revoked_at),
        reason=revocation.reason,
        source=revocation.source,
        crl_signature_hash=revocation.crl_signature_hash,
    )


def _revocation_from_pb(rev: pb.Revocation, where: str) -> Revocation:
    if not rev.HasField("revoked_at"):
        raise ValueError(f"{where}: revocation has no revoked_at")
    if rev.reason and rev.reason not in REVOCATION_REASONS:
        raise ValueError(f"{where}: unknown revocation reason {bounded(rev.reason)!r}")
    return Revocation(
        from_timestamp(rev.revoked_at, f"{where}: revoked_at"),
        rev.reason,
        rev.source,
        rev.crl_signature_hash,
    )


def _source_to_pb(source: SourceRef) -> pb.SourceRef:
    # last_seen stays in the party's own store: it moves at every collection, so on the wire it
    # would change every record of every snapshot and no delta could be smaller than the set.
    # Keyed by the UTC instant: equal datetimes of a daylight-saving zone may be an hour apart.
    key = (source.kind, source.location, _utc_key(source.first_seen))
    msg = _SOURCE_MESSAGES.get(key)
    if msg is None:  # once per distinct source: a snapshot's records share a few
        first_seen = timestamp(source.first_seen)
        msg = _SOURCE_MESSAGES.keep(
            key, pb.SourceRef(kind=source.kind, location=source.location, first_seen=first_seen)
        )
    return msg  # never changed here: a Record built with it holds a copy


_SOURCE_MESSAGES: Kept[tuple[str, str, object], pb.SourceRef] = Kept()


def _utc_key(at: datetime) -> object:
    """`at` as a key naming one instant: itself in UTC; a naive time (which `timestamp`
    refuses) as itself, never equal to an aware one."""
    return at if at.tzinfo is None else at.astimezone(UTC)


def _source_from_pb(msg: pb.SourceRef, where: str) -> SourceRef:
    """A source as sent; without last_seen (what agents send) it is taken as first_seen, the
    one time the record itself says."""
    if not msg.HasField("first_seen"):
        raise ValueError(f"{where}: no times")
    first = from_timestamp(msg.first_seen, f"{where}: first_seen")
    last = (
        from_timestamp(msg.last_seen, f"{where}: last_seen") if msg.HasField("last_seen") else first
    )
    return SourceRef(msg.kind, msg.location, first, last)


def _day(value: date | None) -> str:
    return value.isoformat() if value else ""


def _parse_day(text: str, where: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError as e:
        raise ValueError(f"{where}: {bounded(text)!r} is not a YYYY-MM-DD date") from e


def _period_to_pb(period: AuditPeriod) -> pb.AuditPeriod:
    return pb.AuditPeriod(
        kind=period.kind,
        period_start=_day(period.period_start),
        period_end=_day(period.period_end),
        statement_date=_day(period.statement_date),
    )


def _period_from_pb(msg: pb.AuditPeriod, where: str) -> AuditPeriod:
    return AuditPeriod(
        msg.kind,
        _parse_day(msg.period_start, where),
        _parse_day(msg.period_end, where),
        _parse_day(msg.statement_date, where),
    )


def _audit_entry_to_pb(entry: AuditScopeEntry) -> pb.AuditScopeEntry:
    return pb.AuditScopeEntry(
        audit=_period_to_pb(entry.audit), source=entry.source, flags=entry.flags
    )


def _audit_entry_from_pb(msg: pb.AuditScopeEntry, sha256: str, where: str) -> AuditScopeEntry:
    period = _period_from_pb(msg.audit, f"{where} audit scope")
    return AuditScopeEntry(sha256, period, msg.source, tuple(msg.flags))


def _ccadb_audit_to_pb(audit: CcadbAudit) -> pb.CcadbAudit:
    return pb.CcadbAudit(
        kind=audit.kind,
        url=audit.url,
        type=audit.type,
        statement_date=_day(audit.statement_date),
        period_start=_day(audit.period_start),
        period_end=_day(audit.period_end),
    )


def _ccadb_audit_from_pb(msg: pb.CcadbAudit, where: str) -> CcadbAudit:
    return CcadbAudit(
        msg.kind,
        msg.url,
        msg.type,
        _parse_day(msg.statement_date, where),
        _parse_day(msg.period_start, where),
        _parse_day(msg.period_end, where),
    )


def _disclosure_to_pb(d: Disclosure) -> pb.Disclosure:
    return pb.Disclosure(
        source=d.source,
        ca_owner=d.ca_owner,
        subordinate_ca_owner=d.subordinate_ca_owner,
        record_type=d.record_type,
        revocation_status=d.revocation_status,
        revocation_date=_day(d.revocation_date),
        revocation_reason=d.revocation_reason,
        technically_constrained=_TRI_TO_PB[d.technically_constrained],
        derived_trust_bits=d.derived_trust_bits,
        audits=[_ccadb_audit_to_pb(a) for a in d.audits],
    )


def _disclosure_from_pb(msg: pb.Disclosure, sha256: str, where: str) -> Disclosure:
    where = f"{where} disclosure"
    return Disclosure(
        sha256=sha256,
        source=msg.source,
        ca_owner=msg.ca_owner,
        subordinate_ca_owner=msg.subordinate_ca_owner,
        record_type=msg.record_type,
        revocation_status=msg.revocation_status,
        revocation_date=_parse_day(msg.revocation_date, where),
        revocation_reason=msg.revocation_reason,
        technically_constrained=_TRI_FROM_PB.get(msg.technically_constrained),
        derived_trust_bits=tuple(msg.derived_trust_bits),
        audits=tuple(_ccadb_audit_from_pb(a, where) for a in msg.audits),
    )


def facts_to_bytes(record: CertRecord) -> bytes:
    """Only the facts beside the certificate (attribution, public view, audit, evidence), for
    the agent's store, which keeps the DER and the sources in columns of their own."""
    if record.disclosure is None and not record.audit_scope and not record.revocation_evidence:
        # Most records: their attribution alone, of which a collection has a few.
        known = _ATTRIBUTION_ONLY.get(record.attribution)
        if known is None:
            known = _ATTRIBUTION_ONLY.keep(record.attribution, _facts_bytes(record))
        return known
    return _facts_bytes(record)


_ATTRIBUTION_ONLY: Kept[str, bytes] = Kept()


def _facts_bytes(record: CertRecord) -> bytes:
    msg = pb.Record(
        audit_scope=[_audit_entry_to_pb(a) for a in record.audit_scope],
        revocation_evidence=[revocation_to_pb(r) for r in record.revocation_evidence],
        attribution=record.attribution,
    )
    if record.disclosure is not None:
        msg.disclosure.CopyFrom(_disclosure_to_pb(record.disclosure))
    serialized: bytes = msg.SerializeToString(deterministic=True)
    return serialized


def facts_from_bytes(data: bytes, sha256: str) -> dict[str, Any]:
    """The facts `facts_to_bytes` wrote for certificate `sha256`, as CertRecord's keyword
    arguments; ValueError names the bad field."""
    msg = pb.Record.FromString(data)
    where = f"certificate {sha256}"
    return {
        "attribution": msg.attribution,
        "disclosure": _disclosure_from_pb(msg.disclosure, sha256, where)
        if msg.HasField("disclosure")
        else None,
        "audit_scope": tuple(_audit_entry_from_pb(a, sha256, where) for a in msg.audit_scope),
        "revocation_evidence": tuple(
            _revocation_from_pb(r, f"{where} evidence") for r in msg.revocation_evidence
        ),
    }
