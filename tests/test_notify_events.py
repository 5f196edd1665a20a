"""The events a pairing's report makes against the previous one the agent saw, on real report
bodies of the SECOM/JPRS demo (two certificates missing at the subordinate, errors past their
due date, and two doppelganger warnings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from invsync.agent.model.findings import AckMark, Finding, Severity
from invsync.agent.notify.diff import report_events
from invsync.agent.notify.events import Event
from invsync.agent.report.body import ReportBody, build_report_body, parse_report_body
from invsync.agent.times import rfc3339
from tests.report_helpers import AS_OF, DV_BUG, OV_BUG, ROOT_REF, SUB_REF, demo_findings, signers

NOW = datetime(2021, 3, 1, tzinfo=UTC)
MISSING = "missing-at-subordinate"


def _body(
    findings: Sequence[Finding], as_of: datetime, previous: ReportBody | None = None
) -> ReportBody:
    return parse_report_body(
        build_report_body(
            pairing="secom-jprs",
            as_of=as_of,
            root=ROOT_REF,
            subordinate=SUB_REF,
            findings=findings,
            signers=signers(),
            previous=previous,
        )
    )


def _kinds(events: list[Event]) -> list[tuple[str, str, str]]:
    return sorted((e.kind, e.code, e.sha256[:8]) for e in events)


def test_a_first_report_opens_every_finding_and_tells_what_is_overdue() -> None:
    body = _body(demo_findings(), AS_OF)
    events = report_events(None, body, "secom", NOW)
    assert _kinds(events) == [
        ("finding-opened", "doppelganger-untracked", "21C06633"),
        ("finding-opened", "doppelganger-untracked", "659B7A51"),
        ("finding-opened", MISSING, "21C06633"),
        ("finding-opened", MISSING, "659B7A51"),
        ("overdue", MISSING, "21C06633"),  # due 2020-07-17, long before the report
        ("overdue", MISSING, "659B7A51"),
    ]
    opened = next(e for e in events if e.kind == "finding-opened" and e.code == MISSING)
    assert (opened.pairing, opened.report_id, opened.party) == (
        "secom-jprs",
        body.report_id,
        "jprs",
    )
    assert (opened.severity, opened.agent_party, opened.time) == ("error", "secom", NOW)


def test_the_same_report_again_makes_the_same_event_ids() -> None:
    body = _body(demo_findings(), AS_OF)
    first = {e.event_id for e in report_events(None, body, "secom", NOW)}
    again = {e.event_id for e in report_events(None, body, "secom", NOW + timedelta(hours=1))}
    assert first == again and len(first) == 6


def test_nothing_new_makes_no_event() -> None:
    first = _body(demo_findings(), AS_OF)
    second = _body(demo_findings(), AS_OF + timedelta(days=1), previous=first)
    assert report_events(first, second, "secom", NOW) == []


def test_a_severity_change_and_a_resolution() -> None:
    findings = demo_findings()
    first = _body(findings, AS_OF)
    changed = [
        replace(f, severity=Severity.ERROR) if f.code == "doppelganger-untracked" else f
        for f in findings
        if not (f.code == MISSING and f.sha256 == DV_BUG)
    ]
    second = _body(changed, AS_OF + timedelta(days=1), previous=first)
    events = report_events(first, second, "secom", NOW)
    assert _kinds(events) == [
        ("resolved", MISSING, "659B7A51"),
        ("severity-changed", "doppelganger-untracked", "21C06633"),
        ("severity-changed", "doppelganger-untracked", "659B7A51"),
    ]
    change = next(e for e in events if e.kind == "severity-changed")
    assert change.message.startswith("severity warning -> error: ")
    resolved = next(e for e in events if e.kind == "resolved")
    assert resolved.severity == "error" and resolved.message.startswith("no longer found: ")


def test_a_resolution_the_agent_did_not_see_before_is_told_from_the_reports_list() -> None:
    first = _body(demo_findings(), AS_OF)
    rest = [f for f in demo_findings() if f.sha256 != OV_BUG]
    second = _body(rest, AS_OF + timedelta(days=1), previous=first)
    events = report_events(None, second, "secom", NOW)  # the agent never saw `first`
    resolved = [e for e in events if e.kind == "resolved"]
    assert _kinds(resolved) == [
        ("resolved", "doppelganger-untracked", "21C06633"),
        ("resolved", MISSING, "21C06633"),
    ]
    # Seen through the previous report too, the resolution is the same event.
    seen = {e.event_id for e in report_events(first, second, "secom", NOW) if e.kind == "resolved"}
    assert seen == {e.event_id for e in resolved}


def test_a_due_date_passed_between_two_reports() -> None:
    due = AS_OF + timedelta(hours=12)
    findings = [replace(f, due=due) if f.code == MISSING else f for f in demo_findings()]
    first = _body(findings, AS_OF)
    assert "overdue" not in {e.kind for e in report_events(None, first, "secom", NOW)}
    second = _body(findings, AS_OF + timedelta(days=1), previous=first)
    events = report_events(first, second, "secom", NOW)
    assert _kinds(events) == [("overdue", MISSING, "21C06633"), ("overdue", MISSING, "659B7A51")]
    assert events[0].due == due
    third = _body(findings, AS_OF + timedelta(days=2), previous=second)
    assert report_events(second, third, "secom", NOW) == []  # still overdue: no news


def test_an_acknowledged_finding_opens_without_an_event() -> None:
    mark = AckMark("jprs", "known", AS_OF - timedelta(days=1), AS_OF + timedelta(days=30))
    findings = [
        replace(f, acknowledgement=mark) if f.code == MISSING else f for f in demo_findings()
    ]
    events = report_events(None, _body(findings, AS_OF), "secom", NOW)
    assert {e.code for e in events} == {"doppelganger-untracked"}


def _acknowledged(until: datetime) -> list[Finding]:
    mark = AckMark("jprs", "known", AS_OF - timedelta(days=1), until)
    return [replace(f, acknowledgement=mark) if f.code == MISSING else f for f in demo_findings()]


def test_an_acknowledgement_that_expired_opens_the_finding_again() -> None:
    end = AS_OF + timedelta(days=10)
    first = _body(_acknowledged(end), AS_OF)
    second = _body(demo_findings(), AS_OF + timedelta(days=20), previous=first)
    events = report_events(first, second, "secom", NOW)
    assert _kinds(events) == [
        ("finding-opened", MISSING, "21C06633"),
        ("finding-opened", MISSING, "659B7A51"),
        ("overdue", MISSING, "21C06633"),  # due 2020-07-17, and nobody covers it now
        ("overdue", MISSING, "659B7A51"),
    ]
    opened = next(e for e in events if e.kind == "finding-opened")
    assert opened.occurrence == f"open again {rfc3339(end)}"
    assert opened.message.startswith(f"open again (acknowledged until {rfc3339(end)}): ")
    # Other events than the first opening and the first overdue, the same when found again.
    first_ids = {e.event_id for e in report_events(None, _body(demo_findings(), AS_OF), "x", NOW)}
    ids = {e.event_id for e in events}
    assert len(ids) == 4 and not ids & first_ids
    assert ids == {e.event_id for e in report_events(first, second, "secom", NOW)}
    third = _body(demo_findings(), AS_OF + timedelta(days=21), previous=second)
    assert report_events(second, third, "secom", NOW) == []


def test_an_acknowledgement_withdrawn_opens_the_finding_again() -> None:
    first = _body(_acknowledged(AS_OF + timedelta(days=30)), AS_OF)
    as_of = AS_OF + timedelta(days=1)
    second = _body(demo_findings(), as_of, previous=first)
    opened = [e for e in report_events(first, second, "secom", NOW) if e.kind == "finding-opened"]
    assert [e.occurrence for e in opened] == [f"open again {rfc3339(as_of)}"] * 2
    assert opened[0].message.startswith("open again (its acknowledgement withdrawn): ")
