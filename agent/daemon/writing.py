"""Writing a settled report: its signed JSON, Markdown, HTML page and findings CSV side by side.

The files show the report's signatures as this agent's configuration pins them (`AgentParts.pins`),
never as the keys the report lists about itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from invsync.agent.daemon.parts import AgentParts
from invsync.agent.errors import ReportError
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.files import write_atomically
from invsync.agent.model.findings import Severity
from invsync.agent.report.body import (
    ReportBody,
    ReportVerification,
    parse_report_body,
    read_report_file,
    verify_report,
    write_report_file,
)
from invsync.agent.report.files import page, report_files
from invsync.agent.report.render.csv import findings_csv
from invsync.agent.report.render.text import report_markdown
from invsync.agent.telemetry import metrics


@dataclass(frozen=True)
class CycleResult:
    pairing: str
    version: int
    report_id: str
    report_path: Path
    markdown_path: Path
    verification: ReportVerification
    open_errors: int = 0  # findings of severity error not acknowledged
    body: ReportBody | None = None  # as parsed from the report's payload
    payload: bytes = b""  # the report body's bytes, as signed

    @property
    def complete(self) -> bool:
        return self.verification.complete


def write_report(agent: AgentParts, pairing: str, rid: str, env: Envelope) -> CycleResult:
    """Write the report `rid` of `pairing` into the report directory; what was written."""
    directory = agent.config.report_dir
    directory.mkdir(parents=True, exist_ok=True)
    body = parse_report_body(env.payload)
    metrics.OPEN_FINDINGS.set(pairing, body.findings)
    stem = f"{pairing}-{body.as_of.strftime('%Y%m%dT%H%M%SZ')}-{rid[:12]}"
    json_path = directory / f"{stem}.report.json"
    md_path = directory / f"{stem}.md"
    write_report_file(json_path, env)
    own = agent.store.latest_sent_snapshot(pairing)
    version = own.version if own else 0
    pins = agent.pins()
    verification = verify_report(env, pins)
    write_atomically(md_path, report_markdown(body, verification))
    files = report_files(directory)
    current = next(f for f in files if f.report_id == rid)
    write_atomically(json_path.with_name(f"{stem}.html"), page(current, files, pins))
    write_atomically(
        json_path.with_name(f"{stem}.csv"), findings_csv(body.findings, body.certificates)
    )
    errors = sum(
        1 for f in body.findings if f.severity == Severity.ERROR and f.acknowledgement is None
    )
    return CycleResult(
        pairing, version, rid, json_path, md_path, verification, errors, body, env.payload
    )


def written_reports(directory: Path, count: int = 4) -> list[Envelope]:
    """The newest report files written in `directory`, as signed: a fresh process hands them to
    its client, which then answers a report asked for by id from them, and the server answers
    those reports with their signatures alone. A file that cannot be read is left out (the
    report is then fetched whole); whatever is handed over is verified where it is used."""
    if not directory.is_dir():
        return []
    try:
        paths = sorted(directory.glob("*.report.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    reports = []
    for path in paths[-count:]:
        try:
            reports.append(read_report_file(path))
        except ReportError:
            continue
    return reports
