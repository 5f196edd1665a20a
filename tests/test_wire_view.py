"""A record's wire view is exactly what decoding its serialized bytes gives (issue 13).

The agent builds its own snapshot's decoded records from the records it serialized instead of
decoding them again (`record_codec.wire_view`, shared through `snapshot.Built.decoded`). The
report it co-signs must be the server's byte for byte, and the server decodes: so the view must
equal the decoding on every record it is made for, field by field and in its text.
"""

from __future__ import annotations

import gc
import hashlib
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange import recent_snapshots
from invsync.agent.exchange.record_codec import (
    record_bytes,
    record_from_pb,
    record_to_pb,
    wire_view,
)
from invsync.agent.exchange.snapshot import BuildMemo, Built, build_snapshot, decode_payload
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry
from invsync.agent.model.record import LIFECYCLES, CertInfo, CertRecord, Revocation, SourceRef
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.sources.pem import load_pem_file
from invsync.v1 import invsync_pb2 as pb
from tests.paths import SECOM_JPRS

T0 = datetime(2021, 3, 10, tzinfo=UTC)
T1 = T0 + timedelta(days=2)
INFOS = [r.info for r in load_pem_file(SECOM_JPRS / "jprs_intermediates_all_generations.pem", T0)]

# Text protobuf can carry (no lone surrogates), as a source reader could hand it over.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
_zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=9)),
        timezone(timedelta(hours=-3, minutes=-30)),
        timezone(timedelta(seconds=1, microseconds=500_000)),  # encoded in UTC: exact
    ]
)
_times = st.builds(
    lambda at, zone: at.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    _zones,
)
_sources = st.builds(SourceRef, _text, _text, _times, _times)
_maybe_text = st.one_of(st.none(), st.just(""), _text)
_lifecycles = st.one_of(st.none(), st.just(""), st.sampled_from(sorted(LIFECYCLES)), _text)
_records = st.builds(
    CertRecord,
    info=st.sampled_from(INFOS),
    operator=_maybe_text,
    lifecycle=_lifecycles,
    sources=st.lists(_sources, max_size=3).map(tuple),
    attribution=_text,
    revocation=st.one_of(
        st.none(), st.builds(Revocation, _times, st.just("superseded"), _text, st.just(""))
    ),
)


def _decoded(record: CertRecord) -> CertRecord | None:
    """The record as a snapshot's reader decodes it; None when its reader refuses it."""
    data = record_to_pb(record).SerializeToString(deterministic=True)
    try:
        return record_from_pb(pb.Record.FromString(data), 0)
    except ValueError:
        return None


@given(_records)
def test_a_wire_view_is_the_decoded_record(record: CertRecord) -> None:
    view, decoded = wire_view(record), _decoded(record)
    if view is None:  # made only for the common shape; any other record is decoded
        assert record.revocation is not None or (
            record.lifecycle and record.lifecycle not in LIFECYCLES
        )
        return
    assert decoded is not None
    assert view == decoded
    assert repr(view) == repr(decoded)  # times in the same zone, values of the same types


def test_the_common_shape_has_a_view_and_every_other_one_is_decoded() -> None:
    source = SourceRef("pem", "ca.pem", T0, T0 + timedelta(days=3))
    plain = CertRecord(INFOS[0], "jprs", "in-use", sources=(source,))
    assert wire_view(plain) == CertRecord(
        INFOS[0], "jprs", "in-use", sources=(SourceRef("pem", "ca.pem", T0, T0),)
    )
    revoked = CertRecord(INFOS[0], revocation=Revocation(T0, "superseded", "log:1"))
    assert wire_view(revoked) is None
    assert wire_view(CertRecord(INFOS[0], lifecycle="retired-ish")) is None


def test_decoding_an_own_snapshot_shares_its_views_and_equals_a_fresh_decode() -> None:
    assert recent_snapshots.installed() is None  # else a decode could be answered from it
    records = [
        CertRecord(info, "jprs", "in-use", sources=(SourceRef("pem", f"{i}.pem", T0, T0),))
        for i, info in enumerate(INFOS)
    ]
    built = _built(records)
    assert len(built.decoded) == len(records)
    shared = decode_payload(built.payload)
    assert all(a is b for a, b in zip(shared.records, built.decoded, strict=True))
    payload, kept = built.payload, [repr(r) for r in shared.records]
    del built, shared
    gc.collect()
    fresh = decode_payload(payload)  # nothing shared is alive: every record decoded
    assert [repr(r) for r in fresh.records] == kept


def test_a_snapshot_of_records_without_views_decodes_them() -> None:
    revoked = [
        CertRecord(info, revocation=Revocation(T0, "superseded", f"log:{i}"))
        for i, info in enumerate(INFOS)
    ]
    built = _built(revoked)
    assert built.decoded == ()
    decoded = decode_payload(built.payload)
    assert sorted(r.revocation.source for r in decoded.records if r.revocation) == sorted(
        f"log:{i}" for i in range(len(INFOS))
    )


def _built(
    records: list[CertRecord],
    version: int = 1,
    on: Built | None = None,
    memo: BuildMemo | None = None,
) -> Built:
    return build_snapshot(
        party="jprs",
        pairing="secom-jprs",
        role="subordinate",
        version=version,
        issued_at=T0,
        expires_at=T0 + timedelta(days=1),
        records=records,
        base=on.full if on else None,
        previous_digest=hashlib.sha256(on.payload).digest() if on else b"",
        memo=memo,
    )


def _plain(infos: list[CertInfo], where: str) -> list[CertRecord]:
    return [CertRecord(i, "jprs", sources=(SourceRef("pem", where, T0, T1),)) for i in infos]


def _seen(snapshot: Snapshot | None) -> tuple[object, ...]:
    assert snapshot is not None
    return (snapshot.header, [repr(r) for r in snapshot.records], snapshot.payload_sha256,
            snapshot.full)  # fmt: skip


def test_a_built_snapshot_is_the_one_its_payload_decodes_to_full_or_delta() -> None:
    first = _built(_plain(INFOS, "a.pem"))
    second = _built(_plain(INFOS[1:], "a.pem") + _plain(INFOS[:1], "b.pem"), 2, first)
    assert second.delta
    built = [_seen(first.snapshot), _seen(second.snapshot)]
    wire = [(first.payload, b""), (second.payload, second.full)]
    del first, second
    gc.collect()  # no view alive: the decodes below decode every record
    assert [_seen(decode_payload(payload, full=full)) for payload, full in wire] == built


def test_a_snapshot_with_a_record_without_a_view_is_left_to_decode() -> None:
    records = _plain(INFOS[1:], "a.pem")
    records.append(CertRecord(INFOS[0], revocation=Revocation(T0, "superseded", "log:1")))
    built = _built(records)
    assert built.snapshot is None and len(built.decoded) == len(INFOS) - 1


@given(
    st.lists(st.tuples(st.booleans(), st.sampled_from(["a.pem", "b.pem"])), min_size=3, max_size=3)
)
def test_the_snapshot_a_delta_builds_on_is_the_one_its_payload_decodes_to(
    sets: list[tuple[bool, str]],
) -> None:
    """Three versions, each of every other certificate or all of them, seen in one file or
    another: the previous snapshot each build gives is a fresh decode of the one before."""
    chain: list[Built] = []
    for version, (halved, where) in enumerate(sets, start=1):
        infos = INFOS[version % 2 :: 2] if halved else INFOS
        chain.append(_built(_plain(infos, where), version, chain[-1] if chain else None))
    assert chain[0].previous is None
    given_previous = [_seen(built.previous) for built in chain[1:]]
    wire = [(built.payload, built.full if built.delta else b"") for built in chain[:-1]]
    del chain
    gc.collect()  # no view alive: the decodes below decode every record
    assert [_seen(decode_payload(payload, full=full)) for payload, full in wire] == given_previous


def test_a_base_without_its_payload_digest_gives_no_previous_snapshot() -> None:
    first = _built(_plain(INFOS, "a.pem"))
    second = build_snapshot(
        party="jprs", pairing="secom-jprs", role="subordinate", version=2, issued_at=T0,
        expires_at=T0 + timedelta(days=1), records=_plain(INFOS, "b.pem"), base=first.full,
    )  # fmt: skip
    assert second.delta and second.snapshot is not None and second.previous is None


_PERIOD = AuditPeriod("WebTrust BR", date(2020, 4, 1), date(2021, 3, 31))
_long_sources = st.builds(
    SourceRef,
    _text,
    st.text(st.characters(exclude_categories=["Cs"]), max_size=300),
    _times,
    _times,
)


@given(
    record=_records,
    more=st.lists(_long_sources, max_size=2).map(tuple),
    disclosed=st.booleans(),
)
def test_a_record_joined_from_its_fields_is_the_one_protobuf_serializes(
    record: CertRecord, more: tuple[SourceRef, ...], disclosed: bool
) -> None:
    """Every record's bytes as the snapshot signs them, joined by hand for the common shape
    (long texts too: lengths of two varint bytes), through protobuf for any other."""
    record = record.with_view(sources=(*record.sources, *more))
    if disclosed:  # no longer the common shape
        entry = AuditScopeEntry(record.sha256, _PERIOD, "audit.csv:2", ("WTBRSSL",))
        record = record.with_view(audit_scope=(entry,))
    assert record_bytes(record) == record_to_pb(record).SerializeToString(deterministic=True)
