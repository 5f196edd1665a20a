"""Renderings of findings and reports for people and scripts (DESIGN §8).

One model (`Finding`, `ReportBody`), several renderers. Every field that comes from a certificate
or from a report body is attacker-controlled text (anyone can put `|`, backticks, HTML or a
newline in a subject), so renderers make control characters visible and the Markdown renderer
backslash-escapes every character Markdown would interpret.

A finding's message does not repeat its certificate's subject, serial or SHA-256: renderings show
them beside it, the subject once, readable (`agent.report.render.names`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime

from invsync.agent.model.findings import CATALOGUE, Finding, Severity, count_by_severity
from invsync.agent.report.body import ReportBody, ReportVerification, SignerStatus, SnapshotRef
from invsync.agent.report.certificates import ListedCertificate
from invsync.agent.report.render.names import readable_dn
from invsync.agent.times import rfc3339

_INVISIBLE = ("Cc", "Cf", "Zl", "Zp")  # controls, bidi overrides, line/paragraph separators
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that can start
# markup (emphasis, code, links, HTML, entities, table cells) in the middle of a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&!#])")


def visible(text: str) -> str:
    """`text` with control and format characters shown as escapes, so nothing is hidden."""
    return "".join(_visible_char(char) for char in text)


def _visible_char(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if unicodedata.category(char) in _INVISIBLE:
        return f"\\u{ord(char):04x}"
    return char


def markdown_text(text: str) -> str:
    """`text` safe inside a Markdown paragraph or table cell: rendered literally, on one line."""
    return visible(_MARKDOWN_SPECIAL.sub(r"\\\1", text))


# --- findings ---------------------------------------------------------------------------------


def findings_text(findings: Iterable[Finding]) -> str:
    """One line per finding, most urgent first: severity, code, SHA-256, then the readable
    subject and the message."""
    return "".join(_text_line(finding) + "\n" for finding in by_urgency(findings))


def by_urgency(findings: Iterable[Finding]) -> list[Finding]:
    """People read errors first; the report body itself keeps its (code, sha256) order."""
    return sorted(findings, key=lambda f: (f.severity.rank, f.code, f.sha256))


def _text_line(finding: Finding) -> str:
    sha = finding.sha256 or "-"
    about = f"{readable_dn(finding.subject)}: " if finding.subject else ""
    line = f"{finding.severity.upper():<8}{finding.code:<24}{sha:<66}{about}{finding.message}"
    return visible(line)


def findings_json(findings: Iterable[Finding], /, **meta: object) -> str:
    """A JSON object: `meta` (datetimes as RFC 3339), a `summary` and the `findings` list."""
    listed = list(findings)
    if {"findings", "summary"} & meta.keys():
        raise ValueError("meta must not be named 'findings' or 'summary'")
    obj = {
        **meta,
        "summary": count_by_severity(listed),
        "findings": [finding.to_json() for finding in listed],
    }
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return rfc3339(value)
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


# --- reports ----------------------------------------------------------------------------------


def report_markdown(body: ReportBody, verification: ReportVerification | None) -> str:
    """The report for people: pairing, clock, snapshots, summary, findings and signatures."""
    sections = [
        _title(body, verification),
        _snapshots(body.root, body.subordinate),
        _summary(body),
        _findings_table(body.findings, {c.sha256: c for c in body.certificates}),
        _actions(body.findings),
        _resolved(body),
        _signatures(body, verification),
    ]
    return "\n\n".join(sections) + "\n"


def _title(body: ReportBody, verification: ReportVerification | None) -> str:
    lines = [
        f"# invsync report: {markdown_text(body.pairing)}",
        "",
        f"- Pairing: {markdown_text(body.pairing)}",
        f"- As of: {rfc3339(body.as_of)}",
        f"- Schema: {markdown_text(body.schema)}",
    ]
    if verification is not None:
        lines.append(f"- Report id (SHA-256 of the body): {verification.report_id}")
    return "\n".join(lines)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    names = list(header)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _snapshots(root: SnapshotRef, subordinate: SnapshotRef) -> str:
    rows = [
        [markdown_text(ref.role), markdown_text(ref.party), str(ref.version), _or_dash(ref.digest)]
        for ref in (root, subordinate)
    ]
    return "## Snapshots\n\n" + _table(["role", "party", "version", "digest"], rows)


def _summary(body: ReportBody) -> str:
    counts = count_by_severity(body.findings)
    rows = [[severity.value, str(counts[severity.value])] for severity in Severity]
    return "## Summary\n\n" + _table(["severity", "findings"], rows)


Certificates = Mapping[str, ListedCertificate]  # by SHA-256
_FINDING_COLUMNS = ("severity", "code", "subject", "issuer", "serial", "not before", "not after")
_FINDING_MORE = ("certificate (SHA-256)", "party", "policy", "due", "first seen", "status")


def _findings_table(findings: Iterable[Finding], certificates: Certificates) -> str:
    rows = [_finding_row(f, certificates.get(f.sha256)) for f in by_urgency(findings)]
    if not rows:
        return "## Findings\n\nNo findings."
    header = [*_FINDING_COLUMNS, *_FINDING_MORE, "message"]
    return "## Findings\n\n" + _table(header, rows)


def _finding_row(finding: Finding, listed: ListedCertificate | None) -> list[str]:
    return [
        finding.severity.value,
        markdown_text(finding.code),
        _or_dash(readable_dn(finding.subject)),
        *_certificate_cells(listed),
        _or_dash(finding.sha256),
        _or_dash(finding.party),
        _or_dash(finding.policy),
        "-" if finding.due is None else rfc3339(finding.due),
        "-" if finding.first_seen is None else rfc3339(finding.first_seen),
        _acknowledged(finding),
        markdown_text(finding.message),
    ]


def _certificate_cells(listed: ListedCertificate | None) -> list[str]:
    """Issuer, serial, notBefore and notAfter; dashes when the body does not list them."""
    if listed is None:
        return ["-"] * 4
    return [
        _or_dash(readable_dn(listed.issuer)),
        _or_dash(listed.serial),
        rfc3339(listed.not_before),
        rfc3339(listed.not_after),
    ]


def _actions(findings: Iterable[Finding]) -> str:
    """What to do, once per code the report has, most urgent code first."""
    codes = list(dict.fromkeys(f.code for f in by_urgency(findings)))
    if not codes:
        return "## What to do\n\nNothing."
    lines = [f"- `{code}`: {markdown_text(_action(code))}" for code in codes]
    return "## What to do\n\n" + "\n".join(lines)


def _action(code: str) -> str:
    info = CATALOGUE.get(code)
    return "-" if info is None else info.action


def _acknowledged(finding: Finding) -> str:
    ack = finding.acknowledgement
    if ack is None:
        return "open"
    return (
        f"acknowledged by {markdown_text(ack.party)} until {rfc3339(ack.expires_at)}: "
        f"{markdown_text(ack.reason)}"
    )


def _resolved(body: ReportBody) -> str:
    """The findings of the previous report that this one no longer lists."""
    if not body.resolved:
        return "## Resolved since the previous report\n\nNone."
    header = ["code", "certificate (SHA-256)", "first seen", "resolved at", "resolved by"]
    rows = [
        [
            markdown_text(r.finding.code),
            _or_dash(r.finding.sha256),
            "-" if r.finding.first_seen is None else rfc3339(r.finding.first_seen),
            rfc3339(r.resolved_at),
            f"root v{r.root_version}, subordinate v{r.subordinate_version}",
        ]
        for r in body.resolved
    ]
    return "## Resolved since the previous report\n\n" + _table(header, rows)


def _signatures(body: ReportBody, verification: ReportVerification | None) -> str:
    header = ["role", "name", "key id", "status"]
    if verification is None:
        rows = [[*_signer_cells(s.role, s.name, s.keyid), "not verified"] for s in body.signers]
        return "## Signatures\n\n" + _table(header, rows)
    rows = [
        [*_signer_cells(c.signer.role, c.signer.name, c.signer.keyid), _status(c.status, c.detail)]
        for c in verification.checks
    ]
    verdict = "complete" if verification.complete else "incomplete"
    roles = ", ".join(f"{role} {status.value}" for role, status in verification.roles.items())
    return f"## Signatures\n\n{_table(header, rows)}\n\nSignatures {verdict}: {roles}."


def _signer_cells(role: str, name: str, keyid: str) -> list[str]:
    return [markdown_text(role), markdown_text(name), _or_dash(keyid)]


def _status(status: SignerStatus, detail: str) -> str:
    return f"{status.value} ({markdown_text(detail)})" if detail else status.value


def _or_dash(text: str) -> str:
    return markdown_text(text) if text else "-"
