"""Incident report drafts in the CCADB layout, filled from a report and the inventory."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.cli.incident import pick
from invsync.agent.errors import ReportError
from invsync.agent.model.findings import AckMark
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import ReportBody, SnapshotRef, build_report_body, parse_report_body
from invsync.agent.report.incident import TO_WRITE, incident_draft
from invsync.agent.sources.registry import load_sources
from invsync.server.cli import invsync
from tests.paths import DEMO

AT = datetime(2021, 3, 1, tzinfo=UTC)
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
HEADINGS = [
    "## Summary",
    "## Impact",
    "## Timeline (UTC)",
    "## Related Incidents",
    "## Root Cause Analysis",
    "## Lessons Learned",
    "## Action Items",
    "## Appendix: affected certificates",
]


def _case() -> tuple[list[CertRecord], ReportBody]:
    secom = load_sources([str(DEMO / "secom_issuance_log.jsonl")], AT)
    jprs = load_sources([str(DEMO / "jprs_ca_certificates.pem")], AT)
    body = build_report_body(
        pairing="secom-jprs",
        as_of=AT,
        root=SnapshotRef("secom", "root", 1, "a" * 64),
        subordinate=SnapshotRef("jprs", "subordinate", 1, "b" * 64),
        findings=reconcile(Side("secom", secom), Side("jprs", jprs), AT),
        signers=[],
    )
    return secom, parse_report_body(body)


def test_the_draft_has_every_ccadb_section_in_order_and_the_facts() -> None:
    records, body = _case()
    finding = pick(f"missing-at-subordinate:{BUG_OV[:8]}", body.findings)
    revoked = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "crl:SCRoot2CRL.crl#3")
    held = [
        r.with_view(revocation_evidence=(revoked,)) if r.sha256 == BUG_OV else r for r in records
    ]
    text = incident_draft(finding, body, [r for r in held if r.sha256 == BUG_OV], "f" * 64)
    positions = [text.index(h) for h in HEADINGS]
    assert positions == sorted(positions)
    assert text.count(TO_WRITE) == 5
    assert f"- {BUG_OV}\n" in text
    assert "| 2020-07-10T04:48:56Z | 21C066332D6B92DD valid from (notBefore) |" in text
    # Markdown escapes "#": the event text is the CRL entry source, shown as text.
    assert "| 2021-03-09T00:00:00Z | 21C066332D6B92DD revoked per crl:SCRoot2CRL.crl\\#3 |" in text
    assert "22B9B172FA931A5B74" in text  # the 9-byte serial, in the appendix


def test_a_reference_matching_two_findings_is_refused_with_both() -> None:
    _, body = _case()
    with pytest.raises(ReportError, match=r"names 2 findings of the report \(doppelganger"):
        pick(BUG_OV[:8], body.findings)


def test_the_timeline_has_when_invsync_first_saw_it_and_the_acknowledgement() -> None:
    _, body = _case()
    finding = pick(f"missing-at-subordinate:{BUG_OV[:8]}", body.findings)
    first = datetime(2021, 1, 1, tzinfo=UTC)
    ack = AckMark(
        "jprs", "revocation planned for 2021-04", first, datetime(2021, 4, 30, tzinfo=UTC)
    )
    text = incident_draft(
        replace(finding, first_seen=first, acknowledgement=ack), body, [], "f" * 64
    )
    assert "| 2021-01-01T00:00:00Z | invsync first reports \\`missing-at-subordinate\\` |" in text
    assert "jprs acknowledges it: revocation planned for 2021-04" in text


def test_without_report_the_cli_takes_the_latest_in_the_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(invsync, ["incident", "draft", BUG_OV[:8], "--dir", str(tmp_path)])
    assert f"no report in {tmp_path}; name one with --report" in str(result.exception)
