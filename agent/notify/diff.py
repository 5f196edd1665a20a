"""The events one report of a pairing makes against the previous one the agent saw: findings
opened, changed in severity, past their due date, and resolved (`agent.report.diff` matches
findings by identity).

A finding that is acknowledged is not news for the party that acknowledged it: it opens, changes
or goes overdue without an event; its resolution is told all the same. When its acknowledgement
expires or is withdrawn it is opened again (`finding-opened`, its occurrence the end of the
acknowledgement, or the report's `as_of` for one withdrawn: another event than its first
opening), and told `overdue` again if it is past due. With no previous report
(the agent's first, or one from before notifications) every open finding is opened now, and the
resolutions the report lists are told: the outbox never queues one event twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from invsync.agent.model.findings import Finding
from invsync.agent.notify.events import Event
from invsync.agent.report.body import ReportBody
from invsync.agent.report.diff import FindingKey, diff_findings, finding_key
from invsync.agent.times import rfc3339


def report_events(
    previous: ReportBody | None, current: ReportBody, party: str, now: datetime
) -> list[Event]:
    """Every event of `current` after `previous` (None: no report of the pairing seen yet)."""
    before = () if previous is None else previous.findings
    diff = diff_findings(before, current.findings)
    old = {finding_key(f): f for f in before}
    again = _open_again(old, current)
    make = _Maker(current, party, now)
    events = [make.event("finding-opened", f, _opened(f, current)) for f in diff.new if _open(f)]
    events += [
        make.event("finding-opened", f, again[key][0], prefix=f"open again ({again[key][1]}): ")
        for f in current.findings
        if (key := finding_key(f)) in again
    ]
    events += [
        make.event("severity-changed", new, f"{new.severity}@{current.report_id}", was=old_f)
        for old_f, new in diff.changed
        if old_f.severity != new.severity and _open(new) and finding_key(new) not in again
    ]
    events += [
        make.event("overdue", f, _overdue(f.due, again.get(finding_key(f))))
        for f in current.findings
        if f.due is not None
        and _open(f)
        and (
            f.due <= current.as_of
            if finding_key(f) in again
            else _newly_overdue(f, f.due, old, previous, current)
        )
    ]
    events += [
        make.event("resolved", f, _opened(f, current)) for f in _resolved(diff.resolved, current)
    ]
    return events


def _open(finding: Finding) -> bool:
    return finding.acknowledgement is None


def _open_again(
    old: dict[FindingKey, Finding], current: ReportBody
) -> dict[FindingKey, tuple[str, str]]:
    """The findings acknowledged in the previous report and open in this one: for each, its
    reopening's occurrence and why."""
    again = {}
    for finding in current.findings:
        was = old.get(finding_key(finding))
        if was is None or was.acknowledgement is None or not _open(finding):
            continue
        end = was.acknowledgement.expires_at
        if end <= current.as_of:
            again[finding_key(finding)] = (
                f"open again {rfc3339(end)}",
                f"acknowledged until {rfc3339(end)}",
            )
        else:
            when = rfc3339(current.as_of)
            again[finding_key(finding)] = (f"open again {when}", "its acknowledgement withdrawn")
    return again


def _overdue(due: datetime, again: tuple[str, str] | None) -> str:
    """An overdue's occurrence: the due date passed; once more when opened again."""
    return rfc3339(due) if again is None else f"{rfc3339(due)} {again[0]}"


def _opened(finding: Finding, current: ReportBody) -> str:
    """The episode a finding belongs to: from its first_seen until it resolves."""
    return rfc3339(finding.first_seen) if finding.first_seen else current.report_id


def _newly_overdue(
    finding: Finding,
    due: datetime,
    old: dict[FindingKey, Finding],
    previous: ReportBody | None,
    current: ReportBody,
) -> bool:
    """Past due now, and not already past due (by its due date then) in the previous report."""
    if due > current.as_of:
        return False
    was = old.get(finding_key(finding))
    if was is None or was.due is None or previous is None:
        return True
    return was.due > previous.as_of


def _resolved(gone: tuple[Finding, ...], current: ReportBody) -> Iterator[Finding]:
    """The findings gone since the previous report seen, and those the report lists resolved
    (against the server's previous report, which may be one this agent never saw)."""
    seen: set[FindingKey] = set()
    for finding in (*gone, *(r.finding for r in current.resolved)):
        if finding_key(finding) not in seen:
            seen.add(finding_key(finding))
            yield finding


class _Maker:
    def __init__(self, current: ReportBody, party: str, now: datetime) -> None:
        self.current, self.party, self.now = current, party, now

    def event(
        self, kind: str, f: Finding, occurrence: str, was: Finding | None = None, prefix: str = ""
    ) -> Event:
        return Event(
            kind=kind,
            agent_party=self.party,
            time=self.now,
            message=prefix + _message(kind, f, was),
            pairing=self.current.pairing,
            report_id=self.current.report_id,
            code=f.code,
            sha256=f.sha256,
            subject=f.subject,
            severity=str(f.severity),
            party=f.party,
            due=f.due,
            occurrence=occurrence,
        )


def _message(kind: str, finding: Finding, was: Finding | None) -> str:
    if kind == "severity-changed" and was is not None:
        return f"severity {was.severity} -> {finding.severity}: {finding.message}"
    if kind == "overdue" and finding.due is not None:
        return f"past its due date {rfc3339(finding.due)}: {finding.message}"
    if kind == "resolved":
        return f"no longer found: {finding.message}"
    return finding.message
