"""A finding keeps its identity (code, certificate, party) across reports."""

from __future__ import annotations

from invsync.agent.model.findings import Finding, Severity, make_finding
from invsync.agent.report.diff import diff_findings, diff_text

SHA = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"


def _missing(severity: Severity, message: str = "secom issued it; jprs lacks it") -> Finding:
    return make_finding(
        "missing-at-subordinate",
        sha256=SHA,
        subject="CN=JPRS Organization Validation Authority - G3",
        party="jprs",
        message=message,
        severity=severity,
    )


def test_a_new_severity_is_a_change_not_a_new_finding() -> None:
    old, new = _missing(Severity.ERROR), _missing(Severity.WARNING)
    diff = diff_findings([old], [new])
    assert (diff.new, diff.resolved, diff.changed) == ((), (), ((old, new),))
    assert "(was: severity error)" in diff_text(diff)


def test_a_reworded_message_is_a_change_too() -> None:
    old, new = _missing(Severity.ERROR), _missing(Severity.ERROR, "reworded")
    assert diff_findings([old], [new]).changed == ((old, new),)


def test_identical_reports_have_no_changes() -> None:
    finding = _missing(Severity.ERROR)
    diff = diff_findings([finding], [finding])
    assert diff.is_empty()
    assert diff_text(diff) == "no changes\n"
