"""A snapshot's records by SHA-256, kept for the next reconciliation (issue 13)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from invsync.agent.errors import ReportError
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile import side_index
from invsync.agent.reconcile.rules.context import Context
from tests.test_store import T0, _collection

RECORDS = tuple(_collection(T0))


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    side_index.forget()
    yield
    side_index.forget()


def test_a_tuple_of_records_is_indexed_once_and_read_only() -> None:
    index = side_index.by_sha256(RECORDS)
    assert dict(index) == {r.sha256: r for r in RECORDS}
    assert side_index.by_sha256(RECORDS) is index
    assert side_index.by_sha256(tuple(RECORDS)) is index  # tuple() of a tuple is itself
    assert side_index.by_sha256(RECORDS[:-1]) is not index
    with pytest.raises(TypeError):
        index[RECORDS[0].sha256] = RECORDS[1]  # type: ignore[index]


def test_a_list_is_indexed_afresh_and_only_the_last_tuples_are_kept() -> None:
    listed = list(RECORDS)
    assert side_index.by_sha256(listed) is not side_index.by_sha256(listed)
    first = side_index.by_sha256(RECORDS)
    for size in range(1, side_index.KEPT + 1):
        side_index.by_sha256(RECORDS[:size])
    again = side_index.by_sha256(RECORDS)
    assert again is not first and dict(again) == dict(first)


def test_a_side_listing_a_certificate_twice_is_refused_every_time() -> None:
    twice = (*RECORDS, RECORDS[0])
    for _ in range(2):
        with pytest.raises(ReportError, match=f"jprs lists certificate {RECORDS[0].sha256}"):
            Context.of(Side("secom", RECORDS), Side("jprs", twice), T0)


def test_an_empty_side_takes_no_place() -> None:
    first = side_index.by_sha256(RECORDS)
    for _ in range(side_index.KEPT):
        assert dict(side_index.by_sha256(())) == {}
    assert side_index.by_sha256(RECORDS) is first
