"""Periodic reports: each pairing gets a report every day, week or month, besides the one made
whenever either party's snapshot changes.

Periods are calendar ones, as compliance teams read them: a daily report is due once the UTC
date differs from the last report's, a weekly one once the ISO week differs, a monthly one once
the month differs. A scheduled report on unchanged snapshots is still a new report when its
as-of time moves (rules such as expiry and overdue audits depend on the clock); with a fixed
`report_as_of` it is the same body, and nothing new is stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from invsync.server.config import SCHEDULES
from invsync.server.reconciling import ReportMaker
from invsync.server.storage import ExchangeStorage

TICK_SECONDS = 60.0
log = logging.getLogger("invsync.server")


def period_key(schedule: str, moment: datetime) -> tuple[int, ...]:
    """Which period `moment` falls in; a report is due when this differs from the last one's."""
    if schedule == "daily":
        return (moment.year, moment.month, moment.day)
    if schedule == "weekly":
        year, week, _ = moment.isocalendar()
        return (year, week)
    if schedule == "monthly":
        return (moment.year, moment.month)
    raise ValueError(f"no period for schedule {schedule!r}")


def due(schedule: str, last_report: datetime | None, now: datetime) -> bool:
    if schedule == "never":
        return False
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown report schedule {schedule!r}")
    return last_report is None or period_key(schedule, last_report) != period_key(schedule, now)


def run_due(
    maker: ReportMaker,
    store: ExchangeStorage,
    schedules: Mapping[str, str],
    now: datetime,
    tried: dict[str, tuple[int, ...]],
) -> list[str]:
    """Make the reports that are due; returns the pairings reported on.

    `tried` remembers the period each pairing was last tried in, so a pairing whose report
    could not change (a side missing, or a fixed as-of time) is not rebuilt every tick.
    """
    made = []
    for pairing, schedule in schedules.items():
        last = store.report(pairing)
        if not due(schedule, last.created_at if last else None, now):
            continue
        period = period_key(schedule, now)
        if tried.get(pairing) == period:
            continue
        tried[pairing] = period
        if maker.make(pairing):
            made.append(pairing)
            log.info("scheduled %s report pairing=%s", schedule, pairing)
    return made


def start_scheduler(
    maker: ReportMaker,
    store: ExchangeStorage,
    schedules: Callable[[], Mapping[str, str]],
    clock: Callable[[], datetime],
    stop: threading.Event,
    tick_seconds: float = TICK_SECONDS,
) -> threading.Thread:
    """A daemon thread that runs `run_due` every `tick_seconds` until `stop` is set, on the
    schedules `schedules()` gives then (a reload changes them: server.live_config)."""

    tried: dict[str, tuple[int, ...]] = {}

    def loop() -> None:
        while not stop.wait(tick_seconds):
            try:
                run_due(maker, store, schedules(), clock(), tried)
            except Exception:  # a failed report must not stop the schedule
                log.exception("scheduled reports failed")

    thread = threading.Thread(target=loop, name="invsync-report-schedule", daemon=True)
    thread.start()
    return thread
