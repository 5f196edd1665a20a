"""Open findings over time, as an inline SVG stacked bar chart for the HTML report.

One bar per report, stacked by severity (errors at the bottom, where the eye starts), with the
count on top, a labelled time axis and a labelled count axis. Inline SVG needs no script and
no external resource, so the page stays one self-contained file. This module computes where
everything goes; `templates/chart.svg.j2` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar

from invsync.agent.model.findings import Severity
from invsync.agent.report.body import ReportBody
from invsync.agent.times import rfc3339

WIDTH, HEIGHT = 720, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 20, 78
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
BASE = TOP + PLOT_H  # the y of the time axis
MAX_LABELS = 12  # more dates than this overlap; every k-th is labelled, and the last


@dataclass(frozen=True)
class HistoryPoint:
    """The open findings of one report: its clock and its count per severity."""

    as_of: datetime
    open_by_severity: Mapping[str, int]

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware")
        unknown = set(self.open_by_severity) - {s.value for s in Severity}
        if unknown:
            raise ValueError(f"not severities: {sorted(unknown)}")
        if any(count < 0 for count in self.open_by_severity.values()):
            raise ValueError("counts must not be negative")
        object.__setattr__(self, "open_by_severity", MappingProxyType(dict(self.open_by_severity)))

    @property
    def total(self) -> int:
        return sum(self.open_by_severity.values())


def history_point(body: ReportBody) -> HistoryPoint:
    """A report's point: every finding in a body is open (there is no acknowledgement yet)."""
    return HistoryPoint(body.as_of, body.summary)


@dataclass(frozen=True)
class Tick:
    """A mark of the count axis, and the gridline at its height."""

    count: int
    y: float

    @property
    def mark_y(self) -> float:
        return self.y + 4.0  # the baseline that centres the mark's digits on the gridline


@dataclass(frozen=True)
class Segment:
    """One severity's part of a bar, titled with its count."""

    severity: str
    title: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    """One report: its stacked segments, errors first (at the bottom), and its total on top."""

    as_of: str
    x: float
    width: float
    segments: tuple[Segment, ...]
    total: int
    total_y: float

    @property
    def middle(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class DateLabel:
    text: str
    x: float
    y: float


@dataclass(frozen=True)
class Chart:
    """Everything `chart.svg.j2` draws, in SVG user units, in a frame the same for every chart."""

    ticks: tuple[Tick, ...]
    bars: tuple[Bar, ...]
    labels: tuple[DateLabel, ...]
    width: ClassVar[int] = WIDTH
    height: ClassVar[int] = HEIGHT
    left: ClassVar[int] = LEFT
    right: ClassVar[int] = WIDTH - RIGHT
    top: ClassVar[int] = TOP
    base: ClassVar[int] = BASE
    mark_x: ClassVar[int] = LEFT - 6  # where the count axis's marks end
    count_title: ClassVar[tuple[float, float]] = (14.0, TOP + PLOT_H / 2)  # (x, y), turned
    time_title: ClassVar[tuple[float, float]] = (LEFT + PLOT_W / 2, HEIGHT - 6.0)


def history_chart(history: Sequence[HistoryPoint]) -> Chart:
    """The chart, oldest report on the left; `history` in any order, at least one point."""
    if not history:
        raise ValueError("a chart needs at least one report")
    points = sorted(history, key=lambda point: point.as_of)
    ticks = _ticks(max(point.total for point in points))
    slot = PLOT_W / len(points)
    every = math.ceil(len(points) / MAX_LABELS)
    return Chart(
        ticks=tuple(Tick(t, _y(t, ticks[-1])) for t in ticks),
        bars=tuple(_bar(i, point, slot, ticks[-1]) for i, point in enumerate(points)),
        labels=tuple(
            _date_label(i, p, slot)
            for i, p in enumerate(points)
            if i % every == 0 or i == len(points) - 1
        ),
    )


def _ticks(peak: int) -> list[int]:
    """0 and up to 5 round steps (1, 2, 5 x 10^k) reaching at least `peak` (and 1)."""
    magnitude = 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * magnitude
            if peak <= 5 * step:
                steps = max(1, math.ceil(peak / step))
                return [step * i for i in range(steps + 1)]
        magnitude *= 10


def _y(count: float, top: int) -> float:
    return BASE - count / top * PLOT_H


def _bar(index: int, point: HistoryPoint, slot: float, top: int) -> Bar:
    width = max(2.0, min(48.0, slot * 0.6))
    when = f"{point.as_of:%Y-%m-%d %H:%M}"
    segments, bottom = [], 0
    for severity in Severity:
        count = point.open_by_severity.get(severity.value, 0)
        if count:
            title = f"{when}: {count} {severity.value}"
            y, height = _y(bottom + count, top), count / top * PLOT_H
            segments.append(Segment(severity.value, title, y, height))
            bottom += count
    return Bar(
        as_of=rfc3339(point.as_of),
        x=LEFT + index * slot + (slot - width) / 2,
        width=width,
        segments=tuple(segments),
        total=point.total,
        total_y=_y(bottom, top) - 4.0,
    )


def _date_label(index: int, point: HistoryPoint, slot: float) -> DateLabel:
    return DateLabel(f"{point.as_of:%Y-%m-%d}", LEFT + index * slot + slot / 2, BASE + 14.0)
