"""Scheduled reports: calendar periods, and a new report only when a period turned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.server.schedule import due, period_key, run_due
from tests.exchange_rig import PAIRING, Keys, make_rig, payload

MONDAY = datetime(2021, 3, 1, 23, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "later", "expected"),
    [
        ("daily", timedelta(minutes=1), True),  # Tuesday 00:00
        ("daily", timedelta(seconds=30), False),
        ("weekly", timedelta(days=6), False),  # Sunday, same ISO week
        ("weekly", timedelta(days=6, minutes=2), True),  # next Monday
        ("monthly", timedelta(days=31), True),  # 1 April
        ("monthly", timedelta(days=29), False),  # 30 March
        ("never", timedelta(days=400), False),
    ],
)
def test_a_report_is_due_when_the_calendar_period_turns(
    schedule: str, later: timedelta, expected: bool
) -> None:
    assert due(schedule, MONDAY, MONDAY + later) is expected


def test_a_pairing_never_reported_is_due_and_an_unknown_schedule_is_refused() -> None:
    assert due("monthly", None, MONDAY)
    with pytest.raises(ValueError, match="no period for schedule 'hourly'"):
        period_key("hourly", MONDAY)


def test_run_due_makes_a_report_once_per_period(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    for party in ("secom", "jprs"):
        rig.push(sign_snapshot(payload(records, party), keys.of(party)), party)
    assert rig.reports() == 2  # one on each push: the first says the peer sent nothing
    last = rig.store.report(PAIRING)
    assert last is not None
    tried: dict[str, tuple[int, ...]] = {}
    same_day = last.created_at
    assert run_due(rig.exchange.reports, rig.store, {PAIRING: "daily"}, same_day, tried) == []
    next_day = last.created_at + timedelta(days=1)
    rig.clock.now = rig.clock.now + timedelta(days=1)  # the report's as-of moves too
    assert run_due(rig.exchange.reports, rig.store, {PAIRING: "daily"}, next_day, tried) == [
        PAIRING
    ]
    assert rig.reports() == 3
    # Tried in this period already: not rebuilt on every tick.
    assert run_due(rig.exchange.reports, rig.store, {PAIRING: "daily"}, next_day, tried) == []
    rig.store.close()
