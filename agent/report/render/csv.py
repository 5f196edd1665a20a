"""Findings as CSV for spreadsheets and scripts (DESIGN §8).

One row per finding, most urgent first, with the columns of `FINDING_FIELDS` in that order, so the
CSV cannot drift from the report body; the `acknowledgement` object is flattened into the columns
`acknowledged_by`, `acknowledged_until` and `acknowledgement_reason` (empty for an open finding).
Then the certificate's `issuer` (RFC 4514, exact), `serial`, `not_before` and `not_after` from the
report's `certificates` (empty when the report does not list it: a body made before reports did,
or a finding about no certificate), and `action`, what to do, from the catalogue. RFC 4180: CRLF
line ends, a field holding a comma, quote, CR or LF is quoted and its quotes doubled.

Subjects and messages are attacker-controlled certificate text and a compliance engineer opens
this file in a spreadsheet, where a cell starting with `=`, `+`, `-` or `@` (or a tab or CR that
the application strips first) is a formula that can run commands or leak data. Such a cell gets a
leading `'`, which spreadsheets read as "this is text" (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from invsync.agent.model.findings import CATALOGUE, FINDING_FIELDS, Finding
from invsync.agent.report.certificates import ListedCertificate
from invsync.agent.report.render.text import by_urgency
from invsync.agent.times import rfc3339

RELATED_SEPARATOR = ";"
ACK_COLUMNS = ("acknowledged_by", "acknowledged_until", "acknowledgement_reason")
CERTIFICATE_COLUMNS = ("issuer", "serial", "not_before", "not_after")
COLUMNS = (
    *(name for name in FINDING_FIELDS if name != "acknowledgement"),
    *ACK_COLUMNS,
    *CERTIFICATE_COLUMNS,
    "action",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def findings_csv(
    findings: Iterable[Finding], certificates: Iterable[ListedCertificate] = ()
) -> str:
    """A header row of `COLUMNS`, then one row per finding, most urgent first; `certificates`
    (a report body's) fill the certificate columns."""
    by_sha256 = {listed.sha256: listed for listed in certificates}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(f, by_sha256.get(f.sha256)) for f in by_urgency(findings))
    return out.getvalue()


def _row(finding: Finding, listed: ListedCertificate | None) -> list[str]:
    obj = finding.to_json()
    ack = finding.acknowledgement
    obj["acknowledged_by"] = "" if ack is None else ack.party
    obj["acknowledged_until"] = "" if ack is None else rfc3339(ack.expires_at)
    obj["acknowledgement_reason"] = "" if ack is None else ack.reason
    facts = {} if listed is None else listed.to_json()
    obj.update({name: facts.get(name, "") for name in CERTIFICATE_COLUMNS})
    info = CATALOGUE.get(finding.code)
    obj["action"] = "" if info is None else info.action
    return [safe_cell(_text(obj[name])) for name in COLUMNS]


def _text(value: object) -> str:
    """The cell text of a `Finding.to_json` value: None (no due date) is empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return RELATED_SEPARATOR.join(str(item) for item in value)
    return str(value)


def safe_cell(text: str) -> str:
    """`text`, with a leading `'` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text
