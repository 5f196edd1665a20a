"""A draft incident report for one finding, in the CCADB incident-report layout.

invsync fills in what the data says: the summary with dates, the impact (certificates and their
SHA-256), and a timeline from the report and the party's inventory history (when each source
first reported the certificate, when it was revoked). The sections only people can write (root
cause, lessons learned, action items) are left as headings with prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import Finding
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import ReportBody
from invsync.agent.report.render.text import markdown_text
from invsync.agent.times import rfc3339

TO_WRITE = "_To be written by the CA._"


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str


def incident_draft(
    finding: Finding, body: ReportBody, records: Sequence[CertRecord], report_id: str
) -> str:
    """Markdown; `records` are the inventory's records of the affected certificates."""
    affected = [finding.sha256, *finding.related]
    sections = [
        f"# Incident report (draft): {finding.code} on {finding.sha256[:16]}",
        _summary(finding, body, report_id),
        _impact(affected, records),
        _timeline(finding, body, records),
        "## Related Incidents\n\n" + TO_WRITE,
        "## Root Cause Analysis\n\n" + TO_WRITE,
        "## Lessons Learned\n\n### What went well\n\n"
        + TO_WRITE
        + "\n\n### What didn't go well\n\n"
        + TO_WRITE
        + "\n\n### Where we got lucky\n\n"
        + TO_WRITE,
        "## Action Items\n\n| action item | kind | due date |\n|---|---|---|\n| | | |",
        _appendix(affected, records),
    ]
    return "\n\n".join(sections) + "\n"


def _summary(finding: Finding, body: ReportBody, report_id: str) -> str:
    due = rfc3339(finding.due) if finding.due else "no policy clock"
    lines = [
        "## Summary",
        "",
        f"- **Finding**: `{finding.code}` ({finding.severity}), {markdown_text(finding.message)}",
        f"- **Certificate**: {finding.sha256} ({markdown_text(finding.subject)})",
        f"- **Pairing**: {markdown_text(body.pairing)}; party that must act: "
        f"{markdown_text(finding.party)}",
        f"- **Policy**: {markdown_text(finding.policy) or 'none named'}; due: {due}",
        f"- **Reported**: invsync report {report_id} as of {rfc3339(body.as_of)}",
    ]
    return "\n".join(lines)


def _impact(affected: Sequence[str], records: Sequence[CertRecord]) -> str:
    held = {r.sha256 for r in records}
    lines = [
        "## Impact",
        "",
        f"{len(affected)} CA certificate(s) affected:",
        "",
        *(f"- {sha}" + ("" if sha in held else " (not in this inventory)") for sha in affected),
    ]
    return "\n".join(lines)


def _timeline(finding: Finding, body: ReportBody, records: Sequence[CertRecord]) -> str:
    entries = [entry for record in records for entry in _events(record)]
    if finding.first_seen and finding.first_seen != body.as_of:
        entries.append(TimelineEntry(finding.first_seen, f"invsync first reports `{finding.code}`"))
    entries.append(TimelineEntry(body.as_of, f"invsync reports `{finding.code}`"))
    if finding.acknowledgement:
        ack = finding.acknowledgement
        entries.append(
            TimelineEntry(ack.acknowledged_at, f"{ack.party} acknowledges it: {ack.reason}")
        )
    if finding.due:
        entries.append(TimelineEntry(finding.due, f"due under {finding.policy}"))
    rows = [f"| {rfc3339(e.at)} | {markdown_text(e.what)} |" for e in sorted(entries, key=_when)]
    return "\n".join(["## Timeline (UTC)", "", "| time | event |", "|---|---|", *rows])


def _when(entry: TimelineEntry) -> tuple[datetime, str]:
    return (entry.at, entry.what)


def _events(record: CertRecord) -> list[TimelineEntry]:
    short = record.sha256[:16]
    events = [TimelineEntry(record.info.not_before, f"{short} valid from (notBefore)")]
    events += [
        TimelineEntry(s.first_seen, f"{short} first reported by {s.kind}:{s.location}")
        for s in record.sources
    ]
    events += [
        TimelineEntry(r.revoked_at, f"{short} revoked per {r.source}")
        for r in record.revocation_evidence or ((record.revocation,) if record.revocation else ())
    ]
    return events


def _appendix(affected: Sequence[str], records: Sequence[CertRecord]) -> str:
    by_sha = {r.sha256: r for r in records}
    rows = [
        f"| {sha} | {markdown_text(by_sha[sha].info.subject)} | {by_sha[sha].info.serial_hex} | "
        f"{rfc3339(by_sha[sha].info.not_before)} | {rfc3339(by_sha[sha].info.not_after)} |"
        for sha in affected
        if sha in by_sha
    ]
    header = "| SHA-256 | subject | serial | not before | not after |\n|---|---|---|---|---|"
    return "## Appendix: affected certificates\n\n" + "\n".join([header, *rows])
