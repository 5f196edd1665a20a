"""What happened in each pairing, from a verified bundle, in log order: snapshots, receipts, key
rotations, reports (with the findings each opened and resolved since the pairing's previous
report) and co-signatures.

Built only from what the checks established (`verify.Verified`), so a timeline is never shown
for a bundle that failed. `timeline_text` is the terminal rendering; `summary.py` renders the
same events as Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.evidence.entries import K, Logged
from invsync.agent.evidence.verify import Verified
from invsync.agent.model.findings import Finding
from invsync.agent.report.body import ReportBody
from invsync.agent.report.diff import diff_findings
from invsync.agent.report.render.text import visible
from invsync.agent.times import rfc3339


@dataclass(frozen=True)
class Event:
    index: int
    kind: str  # "snapshot", "receipt", "key rotation", "report", "co-signature"
    party: str  # "" for what the server alone signed (a report)
    when: datetime | None  # issued, accepted or as of; None for a co-signature
    what: str  # one line for a person
    opened: tuple[Finding, ...] = ()
    resolved: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class PairingTimeline:
    pairing: str
    events: tuple[Event, ...]

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event.kind == kind)


def timelines(verified: Verified) -> list[PairingTimeline]:
    """One timeline per pairing the bundle holds entries of, by pairing name."""
    events: dict[str, list[Event]] = {}
    latest: dict[str, ReportBody] = {}
    for item in verified.entries:
        event = _event(item, verified, latest.get(item.pairing))
        events.setdefault(item.pairing, []).append(event)
        if item.index in verified.reports:
            latest[item.pairing] = verified.reports[item.index]
    return [PairingTimeline(name, tuple(events[name])) for name in sorted(events)]


def _event(item: Logged, verified: Verified, previous: ReportBody | None) -> Event:
    if item.kind == K.LOG_ENTRY_KIND_SNAPSHOT:
        return _snapshot(item, verified)
    if item.kind == K.LOG_ENTRY_KIND_RECEIPT:
        receipt = verified.receipts[item.index]
        what = f"the server acknowledged {item.party} v{item.version} (entry {receipt.log_index})"
        return Event(item.index, "receipt", item.party, receipt.accepted_at, what)
    if item.kind == K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT:
        return _rotation(item, verified)
    if item.kind == K.LOG_ENTRY_KIND_REPORT:
        return _report(item, verified.reports[item.index], previous)
    keys = ", ".join(s.keyid[:16] for s in item.envelope.signatures)
    what = f"{item.party} co-signed report {item.report_id[:16]} (key {keys})"
    return Event(item.index, "co-signature", item.party, None, what)


def _snapshot(item: Logged, verified: Verified) -> Event:
    snapshot = verified.snapshots[item.index]
    header = snapshot.header
    keys = ", ".join(s.keyid[:16] for s in item.envelope.signatures)
    what = (
        f"{header.party} v{header.version} ({header.role}): {header.record_count} records, "
        f"digest {snapshot.payload_sha256[:16]}, signed by {keys}"
    )
    return Event(item.index, "snapshot", item.party, header.issued_at, what)


def _rotation(item: Logged, verified: Verified) -> Event:
    rotation = next(r for i, r in verified.rotations if i == item.index)
    old = ", ".join(k.keyid[:16] for k in rotation.old_keys)
    what = (
        f"{rotation.party} rotated to key {rotation.new_key.keyid[:16]} at v{rotation.version} "
        f"(retired {old})"
    )
    return Event(item.index, "key rotation", item.party, None, what)


def _report(item: Logged, body: ReportBody, previous: ReportBody | None) -> Event:
    diff = diff_findings(() if previous is None else previous.findings, body.findings)
    counts = ", ".join(_count(body.summary.get(s, 0), s) for s in ("error", "warning", "notice"))
    what = (
        f"report {body.report_id[:16]} on {body.root.party} v{body.root.version}, "
        f"{body.subordinate.party} v{body.subordinate.version}: {counts}; "
        f"{len(diff.new)} opened, {len(diff.resolved)} resolved"
    )
    return Event(item.index, "report", "", body.as_of, what, diff.new, diff.resolved)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def timeline_text(verified: Verified) -> str:
    """Every pairing's timeline for a terminal, then a line on what the bundle holds."""
    # Names come from the log: shown with their control characters made visible.
    lines = [visible(line) for timeline in timelines(verified) for line in _lines(timeline)]
    withheld = sum(1 for e in verified.bundle.entries if e.withheld)
    lines.append(
        f"log {verified.bundle.server}: {verified.log.head.size} entries, "
        f"{len(verified.log.leaves)} in the bundle ({verified.bundle.scope}), {withheld} withheld"
    )
    return "\n".join(lines) + "\n"


def _lines(timeline: PairingTimeline) -> Iterator[str]:
    yield f"pairing {timeline.pairing}"
    for event in timeline.events:
        when = rfc3339(event.when) if event.when else "-"
        yield f"  {event.index:>5}  {event.kind:<12}  {when:<20}  {event.what}"
        for label, findings in (("opened", event.opened), ("resolved", event.resolved)):
            for finding in findings:
                sha = finding.sha256 or "-"
                yield f"{'':>9}{label:<9}{finding.severity:<8}{finding.code:<24}{sha}"
