"""The signed report files of an agent's report_dir, read as a pairing's history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from invsync.agent.exchange.envelope import Envelope
from invsync.agent.report.body import (
    Pins,
    ReportBody,
    parse_report_body,
    read_report_file,
    report_id,
    verify_report,
)
from invsync.agent.report.render.html import HistoryPoint, history_point, report_html


@dataclass(frozen=True)
class ReportFile:
    path: Path
    envelope: Envelope
    body: ReportBody

    @property
    def report_id(self) -> str:
        return report_id(self.envelope.payload)


def report_files(directory: Path) -> list[ReportFile]:
    """Every `*.report.json` below `directory`, oldest first (as of, then file time)."""
    paths = sorted(directory.glob("*.report.json"), key=lambda p: p.stat().st_mtime)
    files = [_read(path) for path in paths]
    return sorted(files, key=lambda f: f.body.as_of)


def _read(path: Path) -> ReportFile:
    env = read_report_file(path)
    return ReportFile(path, env, parse_report_body(env.payload))


def earlier(files: Sequence[ReportFile], current: ReportFile) -> list[ReportFile]:
    """The reports of the same pairing before `current`, in order."""
    ids = [f.report_id for f in files]
    index = ids.index(current.report_id) if current.report_id in ids else len(files)
    return [f for f in files[:index] if f.body.pairing == current.body.pairing]


def page(current: ReportFile, files: Sequence[ReportFile], pins: Pins) -> str:
    """The report's HTML page, with the pairing's history chart and its changes; its signatures
    as `pins` judge them (a signer whose key they do not pin is shown as unverified)."""
    before = earlier(files, current)
    history: list[HistoryPoint] = [history_point(f.body) for f in [*before, current]]
    previous = before[-1].body if before else None
    verification = verify_report(current.envelope, pins)
    return report_html(current.body, verification, history=history, previous=previous)
