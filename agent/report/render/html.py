"""The report as one self-contained HTML page for people (DESIGN §8).

One file a compliance engineer can archive or mail: inline CSS, an inline SVG chart, no script,
no external resource (a Content-Security-Policy forbids them too, should a subject ever get
past the escaping). Every text from the body goes through `agent.report.render.markup`, which
escapes whatever is not markup it built: subjects and messages are attacker-controlled.

The page adds nothing to the signed body but what it computes from it: overdue (due before the
body's `as_of`, never the reader's clock, so the page of a report never changes), groups of
doppelgangers, and, given them, the changes since a previous report and the history chart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from invsync.agent.model.findings import Finding, Severity
from invsync.agent.report.body import ReportBody, ReportVerification, SignerStatus
from invsync.agent.report.render.chart import HistoryPoint, history_chart, history_point
from invsync.agent.report.render.html_parts import (
    badge,
    certificate,
    changes_section,
    doppelganger_section,
    is_overdue,
    party_name,
)
from invsync.agent.report.render.markup import (
    Html,
    element,
    join,
    row,
    section,
    table,
    void_element,
)
from invsync.agent.times import rfc3339

__all__ = ["HistoryPoint", "history_point", "is_overdue", "report_html"]

# Inline <style> is the only thing the page may load; SVG is part of the document, not a fetch.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.6em 0}caption{text-align:left;font-weight:bold}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code{font-size:.9em;white-space:nowrap}
.subject{font-family:monospace;overflow-wrap:anywhere}time{white-space:nowrap}
table.findings{width:100%}table.findings td:nth-child(6){min-width:36em}
table.findings td:last-child{overflow-wrap:anywhere}
tr.overdue{background:#fde8e6}tr.acknowledged{background:#eef3f8}
p.acknowledgement{margin:.3em 0 0;color:#2e4a6d}
strong.overdue{color:#b00020}strong.ok{color:#1b6e20}
.badge{border-radius:3px;padding:0 .35em;color:#fff}
.badge.error{background:#c0392b}.badge.warning{background:#b9770e}.badge.notice{background:#2e6da4}
.valid{color:#1b6e20}.invalid,.untrusted{color:#b00020;font-weight:bold}.absent{color:#8a6d00}
ul.related{margin:.2em 0;padding-left:1.2em}
svg.chart{max-width:100%;height:auto}svg text{font-size:11px;fill:#333}
svg .axis{stroke:#333}svg .grid{stroke:#ddd}svg .axis-title{font-size:12px;font-weight:bold}
rect.error{fill:#c0392b}rect.warning{fill:#b9770e}rect.notice{fill:#2e6da4}
.legend span{margin-right:1em}
"""


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
    title = f"invsync report {body.pairing} as of {rfc3339(body.as_of)}"
    sections = [
        _heading(body, verification),
        _snapshots(body),
        _summary(body),
        _findings(body),
        doppelganger_section(body),
        changes_section(body, previous),
        _history(history),
        _signatures(body, verification),
    ]
    head = join(
        [
            void_element("meta", charset="utf-8"),
            void_element(
                "meta", http_equiv="Content-Security-Policy", content=CONTENT_SECURITY_POLICY
            ),
            element("title", title),
            element("style", Html(_CSS)),
        ]
    )
    page = element("html", element("head", head), element("body", *sections), lang="en")
    return f"<!DOCTYPE html>\n{page}\n"


def _heading(body: ReportBody, verification: ReportVerification | None) -> Html:
    facts = [f"As of {rfc3339(body.as_of)}", f"schema {body.schema}"]
    if verification is not None:
        facts.append(f"report id {verification.report_id}")
    nav = [element("a", name, href=f"#{anchor}") for anchor, name in _SECTIONS]
    return element(
        "header",
        element("h1", f"invsync report: {body.pairing}"),
        element("p", " · ".join(facts)),
        element("nav", *join_with(nav, " | ")),
    )


_SECTIONS = (
    ("snapshots", "Snapshots"),
    ("summary", "Summary"),
    ("findings", "Findings"),
    ("doppelgangers", "Doppelganger groups"),
    ("changes", "Changes"),
    ("history", "History"),
    ("signatures", "Signatures"),
)


def join_with(parts: Sequence[Html], separator: str) -> list[Html | str]:
    out: list[Html | str] = []
    for index, part in enumerate(parts):
        out += [separator, part] if index else [part]
    return out


def _snapshots(body: ReportBody) -> Html:
    rows = [
        row([ref.role, ref.party, str(ref.version), element("code", ref.digest)])
        for ref in (body.root, body.subordinate)
    ]
    return section(
        "snapshots",
        "Snapshots",
        table(["role", "party", "version", "digest"], rows, class_="snapshots"),
    )


def _summary(body: ReportBody) -> Html:
    """Open findings, acknowledged ones counted apart: an acknowledgement is not a fix."""
    overdue = [f for f in body.findings if is_overdue(f, body.as_of)]
    still_open = [f for f in body.findings if not f.acknowledged]
    acknowledged = [f for f in body.findings if f.acknowledged]
    mark = element("strong", f"{len(overdue)} overdue", class_="overdue" if overdue else "ok")
    lead = element(
        "p",
        f"{_findings_count(len(still_open))}, {len(acknowledged)} acknowledged, ",
        mark,
        f" (due before {rfc3339(body.as_of)}).",
    )
    severity_rows = [
        row(
            [
                badge(s),
                str(_tally(still_open, severity=s)),
                str(_tally(acknowledged, severity=s)),
                str(_tally(overdue, severity=s)),
            ],
            id=f"summary-{s.value}",
        )
        for s in Severity
    ]
    header = ["severity", "open", "acknowledged", "overdue"]
    by_severity = table(header, severity_rows, class_="by-severity")
    return section("summary", "Summary", lead, by_severity, _by_party(body, overdue))


def _findings_count(count: int) -> str:
    return f"{count} open finding" + ("" if count == 1 else "s")


def _tally(
    findings: Iterable[Finding], *, severity: Severity | None = None, party: str | None = None
) -> int:
    """How many of `findings` have that severity and party (None: any)."""
    return sum(1 for f in findings if severity in (None, f.severity) and party in (None, f.party))


def _by_party(body: ReportBody, overdue: Sequence[Finding]) -> Html:
    """Who must act, the party with most overdue findings first."""
    names = sorted(
        {f.party for f in body.findings},
        key=lambda n: (-_tally(overdue, party=n), -_tally(body.findings, party=n), n),
    )
    rows = [
        row(
            [
                party_name(name),
                str(_tally(overdue, party=name)),
                *(str(_tally(body.findings, severity=s, party=name)) for s in Severity),
                str(_tally(body.findings, party=name)),
            ],
            id=f"party-{index}",
        )
        for index, name in enumerate(names)
    ]
    header = ["must act", "overdue", *(s.value for s in Severity), "total"]
    return table(header, rows, class_="by-party")


def _findings(body: ReportBody) -> Html:
    if not body.findings:
        return section("findings", "Findings", element("p", "No findings."))
    ordered = sorted(body.findings, key=lambda f: _urgency(f, body.as_of))
    header = ["severity", "code", "must act", "policy", "due", "certificate", "message"]
    rows = [_finding_row(index, f, body.as_of) for index, f in enumerate(ordered, 1)]
    return section("findings", "Findings", table(header, rows, class_="findings"))


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


def _finding_row(index: int, finding: Finding, as_of: datetime) -> Html:
    cells: list[Html | str] = [
        badge(finding.severity),
        element("code", finding.code),
        party_name(finding.party),
        finding.policy or "-",
        _due(finding, as_of),
        certificate(finding),
        _message(finding),
    ]
    overdue = "overdue" if is_overdue(finding, as_of) else finding.severity.value
    kind = f"{overdue} acknowledged" if finding.acknowledged else overdue
    return row(cells, id=f"finding-{index}", class_=kind)


def _message(finding: Finding) -> Html | str:
    """The message, then who acknowledged the finding, why and until when (both escaped)."""
    ack = finding.acknowledgement
    if ack is None:
        return finding.message
    until = rfc3339(ack.expires_at)
    note = element(
        "p",
        element("strong", "Acknowledged"),
        f" by {ack.party} until ",
        element("time", until, datetime=until),
        f": {ack.reason}",
        class_="acknowledgement",
    )
    return join([finding.message, note])


def _due(finding: Finding, as_of: datetime) -> Html | str:
    if finding.due is None:
        return "-"
    stamp = rfc3339(finding.due)
    when = element("time", stamp, datetime=stamp)
    if not is_overdue(finding, as_of):
        return when
    days = (as_of - finding.due).days
    return join([when, " ", element("strong", f"overdue by {days} days", class_="overdue")])


def _history(history: Sequence[HistoryPoint]) -> Html:
    if not history:
        return section("history", "Open findings over time", element("p", "No history given."))
    legend = element(
        "p", *(badge(s) for s in Severity), f" {len(history)} reports", class_="legend"
    )
    return section("history", "Open findings over time", history_chart(history), legend)


def _signatures(body: ReportBody, verification: ReportVerification | None) -> Html:
    header = ["role", "name", "key id", "status"]
    if verification is None:
        rows = [
            row([s.role, s.name, element("code", s.keyid), "not verified"]) for s in body.signers
        ]
        return section("signatures", "Signatures", table(header, rows, class_="signatures"))
    rows = [
        row(
            [
                c.signer.role,
                c.signer.name,
                element("code", c.signer.keyid),
                _status(c.status, c.detail),
            ]
        )
        for c in verification.checks
    ]
    roles = ", ".join(f"{role} {status.value}" for role, status in verification.roles.items())
    verdict = "complete" if verification.complete else "INCOMPLETE"
    unknown = [
        element("li", "signature by unlisted key ", element("code", k))
        for k in verification.unknown_keyids
    ]
    extra = [element("ul", *unknown)] if unknown else []
    summary = element("p", element("strong", f"Signatures {verdict}"), f": {roles}.")
    signatures = table(header, rows, class_="signatures")
    return section("signatures", "Signatures", signatures, *extra, summary)


def _status(status: SignerStatus, detail: str) -> Html:
    label = f"{status.value} ({detail})" if detail else status.value
    return element("span", label, class_=status.value)
