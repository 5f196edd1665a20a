"""The report as one self-contained HTML page for people (DESIGN §8).

One file a compliance engineer can archive or mail: inline CSS, an inline SVG chart, no script,
no external resource (a Content-Security-Policy forbids them too, should a subject ever get
past the escaping). This module turns a body into plain data; the Jinja2 templates in
`templates/` make the markup, escaping every value (`agent.report.render.markup`): subjects and
messages are attacker-controlled.

The page adds nothing to the signed body but what it computes from it: overdue (due before the
body's `as_of`, never the reader's clock, so the page of a report never changes), groups of
doppelgangers, and, given them, the changes since a previous report and the history chart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import Finding, Severity
from invsync.agent.report.body import ReportBody, ReportVerification, SnapshotRef
from invsync.agent.report.render.chart import Chart, HistoryPoint, history_chart, history_point
from invsync.agent.report.render.html_parts import (
    Certificates,
    Change,
    Changes,
    Day,
    FindingView,
    Group,
    by_sha256,
    changes,
    finding_view,
    groups,
    is_overdue,
    party_name,
    resolved_in,
)
from invsync.agent.report.render.markup import render
from invsync.agent.times import rfc3339

__all__ = ["CONTENT_SECURITY_POLICY", "HistoryPoint", "history_point", "report_html"]

# Inline <style> is the only thing the page may load; SVG is part of the document, not a fetch.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class SeverityCounts:
    severity: str
    open: int
    acknowledged: int
    overdue: int


@dataclass(frozen=True)
class PartyCounts:
    party: str
    overdue: int
    by_severity: tuple[int, ...]  # in the order of `Severity`
    total: int


@dataclass(frozen=True)
class Summary:
    """Open findings, acknowledged ones counted apart: an acknowledgement is not a fix."""

    open: int
    acknowledged: int
    overdue: int
    by_severity: tuple[SeverityCounts, ...]
    by_party: tuple[PartyCounts, ...]  # who must act, the party with most overdue first


@dataclass(frozen=True)
class Acknowledgement:
    party: str
    until: str
    reason: str


@dataclass(frozen=True)
class FindingRow:
    finding: FindingView
    policy: str
    due: Day | None
    overdue_days: int | None  # None when not overdue
    message: str
    acknowledgement: Acknowledgement | None


@dataclass(frozen=True)
class SignatureRow:
    role: str
    name: str
    keyid: str
    status: str  # "" when not verified
    detail: str


@dataclass(frozen=True)
class Signatures:
    rows: tuple[SignatureRow, ...]
    verified: bool
    complete: bool
    roles: str  # each role's best status
    unknown_keyids: tuple[str, ...]  # signatures by keys the body does not list


@dataclass(frozen=True)
class Page:
    """Everything `report.html.j2` shows, in the order it shows it."""

    pairing: str
    as_of: str
    schema: str
    report_id: str  # "" when not verified
    snapshots: tuple[SnapshotRef, ...]
    summary: Summary
    findings: tuple[FindingRow, ...]  # most urgent first
    groups: tuple[Group, ...]
    changes: Changes | None  # None without a previous report
    previous_report: str  # the id of the report the body continues, "" for the first
    resolved: tuple[Change, ...]  # what the body lists as resolved since that report
    chart: Chart | None  # None without history
    reports: int  # in the history
    signatures: Signatures


def report_html(
    body: ReportBody,
    verification: ReportVerification | None,
    history: Sequence[HistoryPoint] = (),
    previous: ReportBody | None = None,
) -> str:
    """The page: heading, snapshots, summary, findings, doppelganger groups, changes since
    `previous`, the chart of `history` and the signatures as `verification` found them
    (None: shown as not verified)."""
    if verification is not None and verification.body != body:
        raise ValueError("the verification is of another report: its signatures would mislead")
    page = Page(
        pairing=body.pairing,
        as_of=rfc3339(body.as_of),
        schema=body.schema,
        report_id=verification.report_id if verification is not None else "",
        snapshots=(body.root, body.subordinate),
        summary=_summary(body),
        findings=_findings(body),
        groups=groups(body),
        changes=changes(body, previous) if previous is not None else None,
        previous_report=body.previous_report or "",
        resolved=resolved_in(body),
        chart=history_chart(history) if history else None,
        reports=len(history),
        signatures=_signatures(body, verification),
    )
    severities = [s.value for s in Severity]
    return render("report.html.j2", page=page, csp=CONTENT_SECURITY_POLICY, severities=severities)


def _summary(body: ReportBody) -> Summary:
    overdue = [f for f in body.findings if is_overdue(f, body.as_of)]
    still_open = [f for f in body.findings if not f.acknowledged]
    acknowledged = [f for f in body.findings if f.acknowledged]
    by_severity = tuple(
        SeverityCounts(
            s.value,
            _tally(still_open, severity=s),
            _tally(acknowledged, severity=s),
            _tally(overdue, severity=s),
        )
        for s in Severity
    )
    return Summary(
        len(still_open), len(acknowledged), len(overdue), by_severity, _by_party(body, overdue)
    )


def _tally(
    findings: Iterable[Finding], *, severity: Severity | None = None, party: str | None = None
) -> int:
    """How many of `findings` have that severity and party (None: any)."""
    return sum(1 for f in findings if severity in (None, f.severity) and party in (None, f.party))


def _by_party(body: ReportBody, overdue: Sequence[Finding]) -> tuple[PartyCounts, ...]:
    names = sorted(
        {f.party for f in body.findings},
        key=lambda n: (-_tally(overdue, party=n), -_tally(body.findings, party=n), n),
    )
    return tuple(
        PartyCounts(
            party_name(name),
            _tally(overdue, party=name),
            tuple(_tally(body.findings, severity=s, party=name) for s in Severity),
            _tally(body.findings, party=name),
        )
        for name in names
    )


def _findings(body: ReportBody) -> tuple[FindingRow, ...]:
    ordered = sorted(body.findings, key=lambda f: _urgency(f, body.as_of))
    certificates = by_sha256(body.certificates)
    return tuple(_finding_row(f, body.as_of, certificates) for f in ordered)


def _urgency(finding: Finding, as_of: datetime) -> tuple[bool, int, bool, datetime, str, str]:
    """Overdue first, then by severity, then the earliest deadline."""
    return (
        not is_overdue(finding, as_of),
        finding.severity.rank,
        finding.due is None,
        finding.due or as_of,
        finding.code,
        finding.sha256,
    )


def _finding_row(finding: Finding, as_of: datetime, certificates: Certificates) -> FindingRow:
    ack = finding.acknowledgement
    return FindingRow(
        finding=finding_view(finding, certificates),
        policy=finding.policy or "-",
        due=Day.of(finding.due) if finding.due is not None else None,
        overdue_days=_overdue_days(finding, as_of),
        message=finding.message,
        acknowledgement=(
            Acknowledgement(ack.party, rfc3339(ack.expires_at), ack.reason) if ack else None
        ),
    )


def _overdue_days(finding: Finding, as_of: datetime) -> int | None:
    if finding.due is None or not is_overdue(finding, as_of):
        return None
    return (as_of - finding.due).days


def _signatures(body: ReportBody, verification: ReportVerification | None) -> Signatures:
    if verification is None:
        rows = tuple(SignatureRow(s.role, s.name, s.keyid, "", "") for s in body.signers)
        return Signatures(rows, verified=False, complete=False, roles="", unknown_keyids=())
    return Signatures(
        rows=tuple(
            SignatureRow(c.signer.role, c.signer.name, c.signer.keyid, c.status.value, c.detail)
            for c in verification.checks
        ),
        verified=True,
        complete=verification.complete,
        roles=", ".join(f"{role} {status.value}" for role, status in verification.roles.items()),
        unknown_keyids=verification.unknown_keyids,
    )
