"""What a daemon reuses from its last cycle is what deriving afresh gives (issue 13).

`LastValues` answers a record met again (a new object) from what was derived for it last time,
when its CertInfo is the same object and its content equal. These tests hold that to the
derivations it stands for: a certificate row's digest (the store) and a record's encoding in a
snapshot (`build_snapshot`'s memo), on generated records in several zones, with a daylight-saving
zone's repeated hour among them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange.snapshot import BuildMemo, Built
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, Disclosure
from invsync.agent.model.last_values import LastValues, same_sent, same_stored
from invsync.agent.model.record import CertRecord, Revocation, SourceRef
from invsync.agent.store.agent_store import _certificate_columns, row_digest
from tests.test_wire_view import INFOS, T0, _built, _plain, _records

BERLIN = ZoneInfo("Europe/Berlin")
# 02:30 on 2021-10-31 happened twice in Berlin: equal as clock readings, an hour apart.
FIRST_0230 = datetime(2021, 10, 31, 2, 30, tzinfo=BERLIN)
SECOND_0230 = FIRST_0230.replace(fold=1)


def _row(record: CertRecord) -> str:
    return row_digest(_certificate_columns(record))


def _seen(built: Built) -> tuple[object, ...]:
    return built.payload, built.full, [repr(r) for r in built.decoded]


def test_a_record_met_again_is_answered_from_the_last_call() -> None:
    derived: list[str] = []

    def derive(record: CertRecord) -> str:
        derived.append(record.sha256)
        return _row(record)

    memo: LastValues[str] = LastValues(same_stored)
    first = [
        CertRecord(info, "jprs", sources=(SourceRef("pem", "a.pem", T0, T0),)) for info in INFOS
    ]
    assert memo.of(first, derive) == [_row(r) for r in first] and len(derived) == len(INFOS)
    derived.clear()
    later = T0 + timedelta(days=1)
    again = [r.with_view(sources=(SourceRef("pem", "a.pem", T0, later),)) for r in first]
    assert memo.of(again, derive) == [_row(r) for r in first] and derived == []
    moved = [again[0].with_view(operator="secom"), *again[1:]]
    assert memo.of(moved, derive)[0] == _row(moved[0]) and derived == [INFOS[0].sha256]


def test_another_certinfo_object_of_the_same_certificate_is_derived_again() -> None:
    """Only the same object vouches for every value read from the DER."""
    memo: LastValues[str] = LastValues(same_stored)
    record = CertRecord(INFOS[0], "jprs")
    memo.of([record], _row)
    copy = CertRecord(dataclasses.replace(INFOS[0]), "jprs")
    assert memo.of([copy], lambda r: "derived again") == ["derived again"]


def test_only_the_last_calls_records_are_kept() -> None:
    memo: LastValues[str] = LastValues(same_stored)
    memo.of([CertRecord(info) for info in INFOS], _row)
    memo.of([CertRecord(INFOS[0])], _row)
    assert len(memo) == 1
    assert memo.of([CertRecord(INFOS[1])], lambda r: "derived again") == ["derived again"]


def test_times_an_hour_apart_that_compare_equal_are_not_one_content() -> None:
    assert FIRST_0230 == SECOND_0230  # one zone: compared by the clock reading alone
    sources = [SourceRef("pem", "a.pem", at, at) for at in (FIRST_0230, SECOND_0230)]
    records = [CertRecord(INFOS[0], sources=(s,)) for s in sources]
    assert not same_sent(*records)
    revoked = [CertRecord(INFOS[0], revocation=Revocation(at, "superseded", "log:1"))
               for at in (FIRST_0230, SECOND_0230)]  # fmt: skip
    assert _row(revoked[0]) != _row(revoked[1])
    memo: LastValues[str] = LastValues(same_stored)
    assert [memo.of([r], _row)[0] for r in revoked] == [_row(r) for r in revoked]


_zoned = st.sampled_from([FIRST_0230, SECOND_0230, FIRST_0230.astimezone(UTC)])
_dst_records = st.builds(
    CertRecord,
    info=st.sampled_from(INFOS),
    operator=st.sampled_from([None, "jprs"]),
    sources=st.lists(st.builds(SourceRef, st.just("pem"), st.just("a.pem"), _zoned, _zoned)).map(
        tuple
    ),
    revocation=st.one_of(
        st.none(), st.builds(Revocation, _zoned, st.just("superseded"), st.just("log:1"))
    ),
)
_any_records = st.one_of(_records, _dst_records)


@given(_any_records, _any_records)
def test_a_row_digest_reused_is_the_one_derived_afresh(
    earlier: CertRecord, later: CertRecord
) -> None:
    memo: LastValues[str] = LastValues(same_stored)
    memo.of([earlier], _row)
    assert memo.of([later], _row) == [_row(later)]


def _disclosure(constrained: bool | None, reason: str) -> Disclosure:
    return Disclosure(
        INFOS[0].sha256, "ccadb.csv:2", "SECOM", "JPRS", "Intermediate Certificate",
        "Revoked", date(2021, 3, 9), reason, constrained, ("Websites",), (),
    )  # fmt: skip


_AUDIT = AuditPeriod("WebTrust BR", date(2020, 4, 1), date(2021, 3, 31))
# For each field a record's row or wire form is made of, values that differ from each other
# (equal pairs too: times of one instant in two zones, and of one clock reading an hour apart).
_OTHER_VALUES: dict[str, list[object]] = {
    "operator": [None, "", "jprs", "secom"],
    "lifecycle": [None, "", "in-use", "unused"],
    "revocation": [
        None,
        Revocation(FIRST_0230, "superseded", "log:1"),
        Revocation(SECOND_0230, "superseded", "log:1"),
        Revocation(FIRST_0230.astimezone(UTC), "superseded", "log:1"),
        Revocation(FIRST_0230, "keyCompromise", "log:1"),
    ],
    "attribution": ["", "rule:subject-organization", "ccadb"],
    "disclosure": [
        None,
        _disclosure(True, ""),
        _disclosure(None, ""),
        _disclosure(True, "keyCompromise"),
    ],
    "audit_scope": [
        (),
        (AuditScopeEntry(INFOS[0].sha256, _AUDIT, "scope.txt:3"),),
        (AuditScopeEntry(INFOS[0].sha256, _AUDIT, "scope.txt:3", ("WTBR",)),),
    ],
    "revocation_evidence": [
        (),
        (Revocation(FIRST_0230, "superseded", "crl:a.crl"),),
        (Revocation(SECOND_0230, "superseded", "crl:a.crl"),),
    ],
    "sources": [
        (),
        (SourceRef("pem", "a.pem", T0, T0),),
        (SourceRef("pem", "a.pem", FIRST_0230, T0),),
        (SourceRef("pem", "a.pem", SECOND_0230, T0),),
        (SourceRef("pem", "b.pem", T0, T0),),
    ],
}


@given(
    _any_records,
    st.sampled_from(sorted(_OTHER_VALUES)).flatmap(
        lambda name: st.tuples(
            st.just(name),
            st.sampled_from(_OTHER_VALUES[name]),
            st.sampled_from(_OTHER_VALUES[name]),
        )
    ),
)
def test_a_record_changed_in_one_field_is_derived_again_where_that_field_counts(
    record: CertRecord, change: tuple[str, object, object]
) -> None:
    """The same certificate met again with one field other: the row digest and the snapshot
    encoding reused or derived again are what deriving afresh gives."""
    name, before, after = change
    earlier, later = record.with_view(**{name: before}), record.with_view(**{name: after})
    rows: LastValues[str] = LastValues(same_stored)
    rows.of([earlier], _row)
    assert rows.of([later], _row) == [_row(later)]
    memo = BuildMemo()
    with contextlib.suppress(ValueError):
        _built([earlier], memo=memo)
    try:
        fresh = _seen(_built([later]))
    except ValueError:  # a time the wire cannot carry: the memo must refuse it too
        fresh = None
    try:
        assert _seen(_built([later], memo=memo)) == fresh
    except ValueError:
        assert fresh is None


def _unique(records: list[CertRecord]) -> list[CertRecord]:
    return list({r.sha256: r for r in records}.values())


@given(st.lists(_any_records, max_size=6), st.lists(_any_records, max_size=6))
def test_a_snapshot_built_on_its_last_encodings_is_the_one_built_afresh(
    earlier: list[CertRecord], later: list[CertRecord]
) -> None:
    earlier, later = _unique(earlier), _unique(later)
    try:
        fresh = _seen(_built(later))
    except ValueError:  # a time the wire cannot carry: the memo must refuse it too
        fresh = None
    memo = BuildMemo()
    with contextlib.suppress(ValueError):
        _built(earlier, memo=memo)
    try:
        assert _seen(_built(later, memo=memo)) == fresh
    except ValueError:
        assert fresh is None


def test_a_snapshot_build_reuses_the_encodings_of_unchanged_records() -> None:
    memo = BuildMemo()
    records = [
        CertRecord(info, "jprs", sources=(SourceRef("pem", "a.pem", T0, T0),)) for info in INFOS
    ]
    first = _built(records, memo=memo)
    kept = {r.info.sha256: r for r in first.decoded}
    later = T0 + timedelta(days=1)
    again = [r.with_view(sources=(SourceRef("pem", "a.pem", T0, later),)) for r in records]
    second = _built(again, memo=memo)
    assert second.payload == first.payload
    assert all(view is kept[view.sha256] for view in second.decoded)
    assert hashlib.sha256(second.full).digest() == hashlib.sha256(_built(again).full).digest()


def _chain_seen(built: Built) -> tuple[object, ...]:
    def seen(snapshot: object) -> object:
        return None if snapshot is None else repr(snapshot)

    return built.payload, built.full, seen(built.snapshot), seen(built.previous)


@given(st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=4))
def test_builds_on_the_last_build_or_an_earlier_one_are_the_ones_built_afresh(
    steps: list[tuple[int, bool]],
) -> None:
    """Each step builds the next version on one of the versions before (a push refused leaves
    the last receipted one as the base, not the last built): with the memo as without."""
    memo = BuildMemo()
    with_memo: list[Built] = [_built(_plain(INFOS, "a.pem"), 1, None, memo)]
    without: list[Built] = [_built(_plain(INFOS, "a.pem"), 1, None, None)]
    for version, (back, halved) in enumerate(steps, start=2):
        infos = INFOS[version % 2 :: 2] if halved else INFOS
        on = max(0, len(with_memo) - 1 - back)
        with_memo.append(_built(_plain(infos, "a.pem"), version, with_memo[on], memo))
        without.append(_built(_plain(infos, "a.pem"), version, without[on], None))
    assert [_chain_seen(b) for b in with_memo] == [_chain_seen(b) for b in without]


def test_a_build_on_the_last_build_does_not_read_its_whole_set(reads: list[bytes]) -> None:
    memo = BuildMemo()
    first = _built(_plain(INFOS, "a.pem"), 1, None, memo)
    read = reads
    read.clear()
    second = _built(_plain(INFOS[1:], "a.pem"), 2, first, memo)
    third = _built(_plain(INFOS, "a.pem"), 3, second, memo)
    assert read == [] and second.delta and third.delta
    # Drafts that change nothing are not pushed: each cycle builds on the same base again.
    for _ in range(2):
        assert _built(_plain(INFOS, "a.pem"), 4, third, memo).payload.startswith(b"\x0a")
    assert read == []
    _built(_plain(INFOS, "b.pem"), 3, first, memo)  # on an earlier one: read as before
    assert read == [first.full]


def test_a_base_read_once_is_held_when_the_draft_on_it_changed_nothing(
    reads: list[bytes],
) -> None:
    """A daemon's first build reads its base from the store; when nothing changed, that
    draft is not pushed, and the next cycle's build on the same base does not read it again."""
    first = _built(_plain(INFOS, "a.pem"), 1)
    memo = BuildMemo()
    read = reads
    read.clear()
    drafts = [_built(_plain(INFOS, "a.pem"), 2, first, memo) for _ in range(3)]
    assert read == [first.full]
    fresh = _chain_seen(_built(_plain(INFOS, "a.pem"), 2, first))
    assert [_chain_seen(d) for d in drafts] == [fresh] * 3  # the base's snapshot too
