"""Findings as CSV for spreadsheets and scripts (DESIGN §8).

One row per finding, most urgent first, with the columns of `FINDING_FIELDS` in that order, so the
CSV cannot drift from the report body; the `acknowledgement` object is flattened into the columns
`acknowledged_by`, `acknowledged_until` and `acknowledgement_reason` (empty for an open finding).
RFC 4180: CRLF line ends, a field holding a comma, quote, CR or LF is quoted and its quotes
doubled.

Subjects and messages are attacker-controlled certificate text and a compliance engineer opens
this file in a spreadsheet, where a cell starting with `=`, `+`, `-` or `@` (or a tab or CR that
the application strips first) is a formula that can run commands or leak data. Such a cell gets a
leading `'`, which spreadsheets read as "this is text" (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from invsync.agent.model.findings import FINDING_FIELDS, Finding
from invsync.agent.report.render.text import by_urgency
from invsync.agent.times import rfc3339

RELATED_SEPARATOR = ";"
ACK_COLUMNS = ("acknowledged_by", "acknowledged_until", "acknowledgement_reason")
COLUMNS = (*(name for name in FINDING_FIELDS if name != "acknowledgement"), *ACK_COLUMNS)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def findings_csv(findings: Iterable[Finding]) -> str:
    """A header row of `COLUMNS`, then one row per finding, most urgent first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(finding) for finding in by_urgency(findings))
    return out.getvalue()


def _row(finding: Finding) -> list[str]:
    obj = finding.to_json()
    ack = finding.acknowledgement
    obj["acknowledged_by"] = "" if ack is None else ack.party
    obj["acknowledged_until"] = "" if ack is None else rfc3339(ack.expires_at)
    obj["acknowledgement_reason"] = "" if ack is None else ack.reason
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
