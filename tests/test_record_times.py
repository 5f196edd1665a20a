"""A record's times as the wire gives them (agent.exchange.record_codec.from_timestamp): the
datetime protobuf's own conversion gives, shared between records (issue 13: a snapshot's
records mostly carry the same few times), and every time out of range refused by name."""

from __future__ import annotations

from datetime import UTC

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange.record_codec import (
    MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS,
    from_timestamp,
)

SECONDS = st.integers(MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS)
NANOS = st.integers(0, 999_999_999)


@given(SECONDS, NANOS)
def test_a_time_is_the_one_protobuf_converts_to(seconds: int, nanos: int) -> None:
    ts = Timestamp(seconds=seconds, nanos=nanos)
    expected = ts.ToDatetime(tzinfo=UTC)
    got = from_timestamp(ts)
    assert got == expected
    assert got.isoformat() == expected.isoformat()  # what messages and reports print
    assert got.tzinfo is UTC


def test_records_of_one_time_share_one_datetime() -> None:
    one = from_timestamp(Timestamp(seconds=1_764_892_800, nanos=5_000))
    assert from_timestamp(Timestamp(seconds=1_764_892_800, nanos=5_000)) is one


@pytest.mark.parametrize(
    ("seconds", "nanos", "message"),
    [
        (MAX_TIMESTAMP_SECONDS + 1, 0, "first_seen: seconds 253402300800 is outside"),
        (MIN_TIMESTAMP_SECONDS - 1, 0, "first_seen: seconds -62135596801 is outside"),
        (0, -1, "first_seen: nanos -1 is outside 0 to 999999999"),
        (0, 1_000_000_000, "first_seen: nanos 1000000000 is outside 0 to 999999999"),
    ],
)
def test_a_time_out_of_range_is_refused_by_name(seconds: int, nanos: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "first_seen")
