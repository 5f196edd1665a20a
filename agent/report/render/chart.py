"""Open findings over time, as an inline SVG stacked bar chart for the HTML report.

One bar per report, stacked by severity (errors at the bottom, where the eye starts), with the
count on top, a labelled time axis and a labelled count axis. Inline SVG needs no script and
no external resource, so the page stays one self-contained file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from invsync.agent.model.findings import Severity
from invsync.agent.report.body import ReportBody
from invsync.agent.report.render.markup import Html, element, join
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


def history_chart(history: Sequence[HistoryPoint]) -> Html:
    """The chart, oldest report on the left; `history` in any order, at least one point."""
    if not history:
        raise ValueError("a chart needs at least one report")
    points = sorted(history, key=lambda point: point.as_of)
    ticks = _ticks(max(point.total for point in points))
    slot = PLOT_W / len(points)
    every = math.ceil(len(points) / MAX_LABELS)
    labels = [
        _date_label(i, p, slot)
        for i, p in enumerate(points)
        if i % every == 0 or i == len(points) - 1
    ]
    return element(
        "svg",
        element("title", "Open findings per report, by severity"),
        _count_axis(ticks),
        _time_axis(),
        *(_bar(i, point, slot, ticks[-1]) for i, point in enumerate(points)),
        *labels,
        width=WIDTH,
        height=HEIGHT,
        viewBox=f"0 0 {WIDTH} {HEIGHT}",
        role="img",
        class_="chart",
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


def _count_axis(ticks: list[int]) -> Html:
    top = ticks[-1]
    marks = [
        element("text", str(t), x=LEFT - 6, y=_y(t, top) + 4.0, text_anchor="end") for t in ticks
    ]
    grid = [
        element("line", x1=LEFT, x2=WIDTH - RIGHT, y1=_y(t, top), y2=_y(t, top), class_="grid")
        for t in ticks[1:]
    ]
    middle = TOP + PLOT_H / 2
    title = element(
        "text",
        "open findings",
        x=14.0,
        y=middle,
        transform=f"rotate(-90 14 {middle:.1f})",
        text_anchor="middle",
        class_="axis-title",
    )
    axis = element("line", x1=LEFT, x2=LEFT, y1=TOP, y2=BASE, class_="axis")
    return element("g", *grid, axis, *marks, title, class_="count-axis")


def _time_axis() -> Html:
    axis = element("line", x1=LEFT, x2=WIDTH - RIGHT, y1=BASE, y2=BASE, class_="axis")
    title = element(
        "text",
        "report (as of, UTC)",
        x=LEFT + PLOT_W / 2,
        y=float(HEIGHT - 6),
        text_anchor="middle",
        class_="axis-title",
    )
    return element("g", axis, title, class_="time-axis")


def _bar(index: int, point: HistoryPoint, slot: float, top: int) -> Html:
    width = max(2.0, min(48.0, slot * 0.6))
    x = LEFT + index * slot + (slot - width) / 2
    when = f"{point.as_of:%Y-%m-%d %H:%M}"
    stacked, bottom = [], 0
    for severity in Severity:
        count = point.open_by_severity.get(severity.value, 0)
        if count:
            label = element("title", f"{when}: {count} {severity.value}")
            y, height = _y(bottom + count, top), count / top * PLOT_H
            stacked.append(
                element("rect", label, x=x, y=y, width=width, height=height, class_=severity.value)
            )
            bottom += count
    total = element(
        "text", str(point.total), x=x + width / 2, y=_y(bottom, top) - 4.0, text_anchor="middle"
    )
    return element("g", join(stacked), total, class_="point", data_as_of=rfc3339(point.as_of))


def _date_label(index: int, point: HistoryPoint, slot: float) -> Html:
    x, y = LEFT + index * slot + slot / 2, BASE + 14.0
    return element(
        "text",
        f"{point.as_of:%Y-%m-%d}",
        x=x,
        y=y,
        transform=f"rotate(-35 {x:.1f} {y:.1f})",
        text_anchor="end",
        class_="date",
    )
