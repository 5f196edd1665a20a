"""A certificate only one record lists (the common case of a collection) is merged without the
merging state (issue 13): `merge` must give what merging that record alone gives, for every
view a record can hold, and refuse what it refused."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.errors import SourceError
from invsync.agent.model import merge as merging
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry
from invsync.agent.model.record import CertRecord, Revocation, SourceRef
from invsync.agent.sources.pem import pem_certificates
from tests.paths import SECOM_JPRS

INFOS = pem_certificates((SECOM_JPRS / "jprs_intermediates_all_generations.pem").read_text(), str)
T0 = datetime(2021, 3, 9, tzinfo=UTC)

TIMES = st.integers(0, 3).map(lambda days: T0 + timedelta(days=days))
SOURCES = st.builds(
    SourceRef, st.sampled_from(["pem", "issuance-log"]), st.sampled_from(["a", "b"]), TIMES, TIMES
)
REVOCATIONS = st.builds(
    Revocation, TIMES, st.sampled_from(["", "superseded"]), st.sampled_from(["log:1", "crl:r#2"])
)
PERIOD = AuditPeriod("WebTrust BR", date(2020, 1, 1), date(2020, 12, 31))


@st.composite
def records(draw: st.DrawFn) -> CertRecord:
    info = draw(st.sampled_from(INFOS))
    entries = st.builds(AuditScopeEntry, st.just(info.sha256), st.just(PERIOD), st.just("s:1"))
    return CertRecord(
        info,
        operator=draw(st.sampled_from([None, "", "jprs"])),
        lifecycle=draw(st.sampled_from([None, "", "unused"])),
        revocation=draw(st.none() | REVOCATIONS),
        sources=tuple(draw(st.lists(SOURCES, max_size=3))),
        attribution=draw(st.sampled_from(["", "issuance-log"])),
        audit_scope=tuple(draw(st.lists(entries, max_size=2))),
        revocation_evidence=tuple(draw(st.lists(REVOCATIONS, max_size=2))),
    )


def _merged_by_state(record: CertRecord) -> CertRecord:
    target = merging._Merging(record.info)
    merging._add(target, record)
    return merging._result(target)


@given(records())
def test_a_record_alone_merges_to_what_the_merging_state_gives(record: CertRecord) -> None:
    assert merge_one(record) == _merged_by_state(record)


@given(st.lists(records(), min_size=1, max_size=6))
def test_many_records_merge_by_certificate_in_sha256_order(found: list[CertRecord]) -> None:
    try:
        merged = merging.merge(found)
    except SourceError:
        return  # two records of one certificate disagreeing: refused, as before
    assert [r.sha256 for r in merged] == sorted({r.sha256 for r in found})
    for record in merged:
        same = [r for r in found if r.sha256 == record.sha256]
        if len(same) == 1:
            assert record == _merged_by_state(same[0])


def merge_one(record: CertRecord) -> CertRecord:
    (merged,) = merging.merge([record])
    return merged


def test_a_record_holding_lists_comes_back_with_tuples_as_merging_makes() -> None:
    record = CertRecord(INFOS[0], sources=[SourceRef("pem", "a", T0, T0)])  # type: ignore[arg-type]
    (merged,) = merging.merge([record])
    assert type(merged.sources) is tuple
    assert merged == _merged_by_state(record)
