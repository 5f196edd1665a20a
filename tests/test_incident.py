"""Incident report drafts in the CCADB layout, from real report bodies of the SECOM/JPRS case
(tests/report_helpers.py: SECOM's issuance log against JPRS's list, the demo data)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.model.findings import AckMark, Finding, make_finding
from invsync.agent.model.record import Revocation
from invsync.agent.report.body import ReportBody, build_report_body, parse_report_body
from invsync.agent.report.certificates import ListedCertificate, lookup_in
from invsync.agent.report.incident import TO_WRITE, Incident, incident_draft
from invsync.agent.report.incident_failures import OUTSIDE_AUDIT, UNREVOKED, UNTRACKED
from invsync.agent.report.incident_history import Sighting, SnapshotMark
from invsync.agent.report.incident_names import readable_name
from invsync.agent.report.incident_select import SelectionError, select
from tests.report_helpers import (
    DV_BUG,
    JPRS_LIST,
    OV_BUG,
    ROOT_REF,
    SECOM_LOG,
    SUB_REF,
    demo_findings,
    signers,
)

JANUARY = datetime(2021, 1, 1, tzinfo=UTC)
MARCH = datetime(2021, 3, 1, tzinfo=UTC)
HEADINGS = [
    "## Full Incident Report",
    "### Summary",
    "### Impact",
    "### Timeline",
    "### Related Incidents",
    "### Root Cause Analysis",
    "### Lessons Learned",
    "### Action Items",
    "### Appendix",
]


def _body(at: datetime, previous: ReportBody | None = None) -> ReportBody:
    raw = build_report_body(
        pairing="secom-jprs",
        as_of=at,
        root=ROOT_REF,
        subordinate=SUB_REF,
        findings=demo_findings(at),
        signers=signers(),
        previous=previous,
        certificates=lookup_in(SECOM_LOG, JPRS_LIST),
    )
    return parse_report_body(raw)


def _history() -> tuple[ReportBody, ReportBody]:
    first = _body(JANUARY)
    return first, _body(MARCH, first)


def _both_certificates(body: ReportBody) -> tuple[Finding, ...]:
    return select(body.findings, certificates=[OV_BUG[:8], DV_BUG[:8]])


def test_the_draft_has_the_ccadb_sections_in_order() -> None:
    _, march = _history()
    text = incident_draft(Incident(_both_certificates(march), (march,)))
    positions = [text.index(heading) for heading in HEADINGS]
    assert positions == sorted(positions)
    assert "- **CA Owner CCADB unique ID:** " + TO_WRITE in text
    assert "- **Total number of certificates:** 2\n" in text


def test_one_draft_names_both_certificates_and_the_three_failures() -> None:
    _, march = _history()
    text = incident_draft(Incident(_both_certificates(march), (march,)))
    summary = text[text.index("### Summary") : text.index("### Impact")]
    # No audit scope in these bodies: the demo's reports have it (tests/test_incident_cli.py).
    for title in (UNTRACKED, UNREVOKED):
        assert f"**{title.capitalize()}**" in summary
    assert OUTSIDE_AUDIT.capitalize() not in summary
    assert (
        "JPRS Organization Validation Authority - G3 (Japan Registry Services Co., Ltd.) "
        "(`21C066332D6B92DD`)" in summary
    )
    assert "(`659B7A518C6C9EB1`) for 234 days, 2020-07-10 to 2021-03-01" in summary
    assert "Policy: TLS BR 4.9.1.2. What to do: Revoke every certificate the subordinate" in summary
    assert "Contributing findings:" in summary and "`doppelganger-untracked` (warning)" in summary


def test_the_timeline_cites_both_reports_and_carries_first_seen() -> None:
    january, march = _history()
    chosen = _both_certificates(march)
    text = incident_draft(Incident(chosen, (january, march)))
    assert "| 2021-01-01T00:00:00Z | invsync report lists doppelganger-untracked on " in text
    assert f"report {january.report_id[:12]} (as of 2021-01-01T00:00:00Z), comparing secom " in text
    assert f"report {march.report_id[:12]} (as of 2021-03-01T00:00:00Z)" in text
    # Only the March report in the directory: January is known from first_seen alone.
    alone = incident_draft(Incident(chosen, (march,)))
    assert "| 2021-01-01T00:00:00Z | invsync first reports doppelganger-untracked on " in alone


def test_the_timeline_shows_the_same_day_reissue_and_the_2019_siblings() -> None:
    _, march = _history()
    text = incident_draft(Incident(_both_certificates(march), (march,)))
    assert "| 2020-07-10T12:47:41Z | doppelganger of 21C066332D6B92DD: JPRS Organization" in text
    assert "| 2019-07-11T04:35:04Z | doppelganger of 21C066332D6B92DD: " in text
    assert "(90EE548EBACACAB4) issued (notBefore)" in text


def test_acknowledgements_resolutions_and_revocations_have_their_rows() -> None:
    january, march = _history()
    ack = AckMark(
        "jprs", "revocation planned for 2021-04", JANUARY, datetime(2021, 4, 30, tzinfo=UTC)
    )
    chosen = tuple(
        replace(f, acknowledgement=ack) if f.code == "missing-at-subordinate" else f
        for f in _both_certificates(march)
    )
    mark = SnapshotMark("secom", 4, "ab" * 32, datetime(2021, 3, 9, 1, tzinfo=UTC))
    revoked = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "crl:/etc/x.crl")
    seen = (Sighting(OV_BUG, mark), Sighting(OV_BUG, mark, revoked))
    text = incident_draft(Incident(chosen, (january, march), seen))
    assert (
        "jprs acknowledges missing-at-subordinate on 21C066332D6B92DD until 2021-04-30T00:00:00Z"
        in text
    )
    assert (
        "| 2021-03-09T00:00:00Z | 21C066332D6B92DD revoked (superseded), as secom's snapshot "
        "records it | secom snapshot v4 sha256:" + "ab" * 32 in text
    )
    assert "/etc/x.crl" not in text
    assert "| Yes | 2021-03-09T00:00:00Z | superseded (as secom snapshot v4" in text


def test_a_resolved_finding_is_a_row_of_the_report_that_resolved_it() -> None:
    january = _body(JANUARY)
    fixed = parse_report_body(
        build_report_body(
            pairing="secom-jprs",
            as_of=MARCH,
            root=ROOT_REF,
            subordinate=SUB_REF,
            findings=[f for f in demo_findings(MARCH) if f.code != "doppelganger-untracked"],
            signers=signers(),
            previous=january,
            certificates=lookup_in(SECOM_LOG, JPRS_LIST),
        )
    )
    chosen = select(january.findings, [f"doppelganger-untracked:{OV_BUG[:8]}"])
    text = incident_draft(Incident(chosen, (january,)))
    assert "invsync report finds resolved" not in text
    text = incident_draft(Incident(chosen, (fixed,)))
    assert "finds resolved: doppelganger-untracked on 21C066332D6B92DD" in text
    assert f"report {fixed.report_id[:12]}" in text


def test_selection_errors_name_the_reference() -> None:
    body = _body(MARCH)
    with pytest.raises(SelectionError, match=r"'FFFF' names 0 findings of the report \(none\)"):
        select(body.findings, ["FFFF"])
    with pytest.raises(SelectionError, match=r"names 2 findings of the report \(doppelganger"):
        select(body.findings, [OV_BUG[:8]])
    with pytest.raises(SelectionError, match=r"--certificate '' names \d+ certificates with"):
        select(body.findings, certificates=[""])
    with pytest.raises(SelectionError, match=r"^no finding named$"):
        select(body.findings)
    acknowledged = tuple(
        replace(f, acknowledgement=AckMark("jprs", "known", JANUARY, MARCH)) for f in body.findings
    )
    with pytest.raises(SelectionError, match="--open-errors: the report has no unacknowledged"):
        select(acknowledged, errors=True)


def test_open_errors_take_every_unacknowledged_error_once() -> None:
    body = _body(MARCH)
    chosen = select(body.findings, [f"missing-at-subordinate:{OV_BUG}"], errors=True)
    assert [(f.code, f.sha256) for f in chosen] == [
        ("missing-at-subordinate", OV_BUG),
        ("missing-at-subordinate", DV_BUG),
    ]


def test_readable_names() -> None:
    subject = "CN=JPRS Domain Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP"
    assert readable_name(subject) == (
        "JPRS Domain Validation Authority - G3 (Japan Registry Services Co., Ltd.)"
    )
    assert readable_name("OU=Security Communication RootCA2,O=SECOM\\2C Inc.,C=JP") == (
        "Security Communication RootCA2 (SECOM, Inc.)"
    )
    assert readable_name("not a name") == "not a name"


def test_a_name_that_would_pass_for_another_keeps_its_escape() -> None:
    # Unescaped, the common name would read as an organization the certificate does not name.
    hostile = "CN=Evil\\, O=Google Trust Services LLC,C=US"
    assert readable_name(hostile) == "CN=Evil\\, O=Google Trust Services LLC, C=US"
    assert "(Google" not in readable_name(hostile)


def _cells(line: str) -> int:
    """The table cells of a Markdown row: pipes not escaped by a backslash."""
    return re.sub(r"\\.", "", line).count("|") - 1


@settings(max_examples=60, deadline=None)
@given(subject=st.text(max_size=60), issuer=st.text(max_size=30), serial=st.text(max_size=10))
def test_hostile_certificate_text_stays_in_its_table_cells(
    subject: str, issuer: str, serial: str
) -> None:
    sha = "AB" * 32
    finding = make_finding(
        "missing-at-subordinate", sha256=sha, subject=subject, party="jprs", message=subject
    )
    listed = ListedCertificate(sha, subject, issuer, serial, JANUARY, MARCH)
    body = replace(
        _body(MARCH), findings=(replace(finding, first_seen=MARCH),), certificates=(listed,)
    )
    text = incident_draft(Incident(body.findings, (body,)))
    appendix = text[text.index("### Appendix") :].splitlines()
    rows = [line for line in appendix if line.startswith("| N/A")]
    assert len(rows) == 1 and _cells(rows[0]) == 13
    timeline = text[text.index("### Timeline") : text.index("### Related")].splitlines()
    assert all(_cells(line) == 3 for line in timeline if line.startswith("| 2"))


def test_an_unused_not_revoked_finding_is_the_left_unrevoked_failure() -> None:
    body = _body(MARCH)
    unused = make_finding(
        "unused-not-revoked",
        sha256=OV_BUG,
        subject="CN=JPRS Organization Validation Authority - G3",
        party="jprs",
        message="marked unused, not revoked",
    )
    chosen = (replace(unused, first_seen=MARCH),)
    text = incident_draft(Incident(chosen, (replace(body, findings=chosen),)))
    assert "1. **Left unrevoked** (`unused-not-revoked`): 1 CA certificate(s)" in text
    assert "for 234 days, 2020-07-10 to 2021-03-01. Policy: TLS BR 4.9.1.2." in text
    assert "certificate(s), 1 failure(s)" in text
