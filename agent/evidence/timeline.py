"""What happened in each pairing, from a verified bundle, in log order: snapshots, receipts, key
rotations, reports (with the findings each opened and resolved since the pairing's previous
report), co-signatures and the operator's chain resets.

Built only from what the checks established (`verify.VerifiedBundle`), so a timeline is never shown
for a bundle that failed. `timeline_text` is the terminal rendering; `summary.py` renders the
same events as Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.evidence.entries import K, LoggedEntry
from invsync.agent.evidence.verify import VerifiedBundle
from invsync.agent.evidence.withheld import withheld_count
from invsync.agent.model.findings import Finding
from invsync.agent.report.body import ReportBody
from invsync.agent.report.diff import diff_findings
from invsync.agent.report.render.text import visible
from invsync.agent.times import rfc3339


@dataclass(frozen=True)
class Event:
    index: int
    # "snapshot", "receipt", "key rotation", "report", "co-signature", "chain reset",
    # "server key" (in every pairing's timeline: the server signs for all of them)
    kind: str
    party: str  # "" for what the server alone signed (a report)
    when: datetime | None  # issued, accepted or as of; None for a co-signature
    what: str  # one line for a person
    opened: tuple[Finding, ...] = ()
    resolved: tuple[Finding, ...] = ()
    signed: tuple[tuple[str, str], ...] = ()  # a report's (signer, "valid" or "absent")

    @property
    def fully_signed(self) -> bool:
        return all(status == "valid" for _, status in self.signed)

    def signing(self) -> str:
        """ "server valid, root secom valid, subordinate jprs absent" for a report, else ""."""
        return ", ".join(f"{who} {status}" for who, status in self.signed)


@dataclass(frozen=True)
class PairingTimeline:
    pairing: str
    events: tuple[Event, ...]

    def count(self, kind: str) -> int:
        return sum(1 for event in self.events if event.kind == kind)


def timelines(verified: VerifiedBundle) -> list[PairingTimeline]:
    """One timeline per pairing the bundle holds entries of, by pairing name."""
    events: dict[str, list[Event]] = {}
    server: list[Event] = []
    latest: dict[str, ReportBody] = {}
    cosigners = _cosigners(verified)
    for item in verified.entries:
        if item.kind == K.LOG_ENTRY_KIND_SERVER_KEY:
            server.append(_server_key(item, verified))
            continue
        event = _event(item, verified, latest.get(item.pairing), cosigners)
        events.setdefault(item.pairing, []).append(event)
        if item.index in verified.reports:
            latest[item.pairing] = verified.reports[item.index]
    for name in events or ({"": []} if server else {}):
        events[name] = sorted([*events.get(name, []), *server], key=lambda e: e.index)
    return [PairingTimeline(name, tuple(events[name])) for name in sorted(events)]


def _server_key(item: LoggedEntry, verified: VerifiedBundle) -> Event:
    """A server key rotation, which check 2 followed (check 7 made sure of it)."""
    rotation = next(r for r in verified.log.server_ring.chain() if r.index == item.index)
    what = (
        f"the server {verified.bundle.server} rotated to server key "
        f"{rotation.new_key.keyid[:16]} (retired {rotation.old_key.keyid[:16]})"
    )
    return Event(item.index, "server key", "", rotation.announced_at, what)


def _cosigners(verified: VerifiedBundle) -> dict[str, set[str]]:
    """Report id -> the parties whose co-signature on it is in the log. Check 10 proved each
    is on that report's exact body, by one of its parties; check 7, with a key in force."""
    signed: dict[str, set[str]] = {}
    for item in verified.entries:
        if item.kind == K.LOG_ENTRY_KIND_REPORT_SIGNATURE:
            signed.setdefault(item.report_id, set()).add(item.party)
    return signed


def unsigned_reports(verified: VerifiedBundle) -> int:
    """How many reports of the bundle lack a co-signature of one of their parties."""
    events = (e for t in timelines(verified) for e in t.events if e.kind == "report")
    return sum(1 for e in events if not e.fully_signed)


def _event(
    item: LoggedEntry,
    verified: VerifiedBundle,
    previous: ReportBody | None,
    cosigners: dict[str, set[str]],
) -> Event:
    if item.kind == K.LOG_ENTRY_KIND_SNAPSHOT:
        return _snapshot(item, verified)
    if item.kind == K.LOG_ENTRY_KIND_RECEIPT:
        receipt = verified.receipts[item.index]
        what = f"the server acknowledged {item.party} v{item.version} (entry {receipt.log_index})"
        return Event(item.index, "receipt", item.party, receipt.accepted_at, what)
    if item.kind == K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT:
        return _rotation(item, verified)
    if item.kind == K.LOG_ENTRY_KIND_REPORT:
        body = verified.reports[item.index]
        return _report(item, body, previous, cosigners.get(body.report_id, set()))
    if item.kind == K.LOG_ENTRY_KIND_CHAIN_RESET:
        reset = verified.resets[item.index]
        return Event(item.index, "chain reset", item.party, reset.reset_at, reset.describe())
    keys = ", ".join(s.keyid[:16] for s in item.envelope.signatures)
    what = f"{item.party} co-signed report {item.report_id[:16]} (key {keys})"
    return Event(item.index, "co-signature", item.party, None, what)


def _snapshot(item: LoggedEntry, verified: VerifiedBundle) -> Event:
    snapshot = verified.snapshots[item.index]
    header = snapshot.header
    keys = ", ".join(s.keyid[:16] for s in item.envelope.signatures)
    what = (
        f"{header.party} v{header.version} ({header.role}): {header.record_count} records, "
        f"digest {snapshot.payload_sha256[:16]}, signed by {keys}"
    )
    return Event(item.index, "snapshot", item.party, header.issued_at, what)


def _rotation(item: LoggedEntry, verified: VerifiedBundle) -> Event:
    rotation = next(r for i, r in verified.rotations if i == item.index)
    old = ", ".join(k.keyid[:16] for k in rotation.old_keys)
    what = (
        f"{rotation.party} rotated to key {rotation.new_key.keyid[:16]} at v{rotation.version} "
        f"(retired {old})"
    )
    return Event(item.index, "key rotation", item.party, None, what)


def _report(
    item: LoggedEntry, body: ReportBody, previous: ReportBody | None, cosigners: set[str]
) -> Event:
    diff = diff_findings(() if previous is None else previous.findings, body.findings)
    counts = ", ".join(_count(body.summary.get(s, 0), s) for s in ("error", "warning", "notice"))
    what = (
        f"report {body.report_id[:16]} on {body.root.party} v{body.root.version}, "
        f"{body.subordinate.party} v{body.subordinate.version}: {counts}; "
        f"{len(diff.new)} opened, {len(diff.resolved)} resolved"
    )
    # The server's signature is valid: check 7 verified it with the pinned server key.
    signed = (
        ("server", "valid"),
        (f"root {body.root.party}", _status(body.root.party, cosigners)),
        (f"subordinate {body.subordinate.party}", _status(body.subordinate.party, cosigners)),
    )
    return Event(item.index, "report", "", body.as_of, what, diff.new, diff.resolved, signed)


def _status(party: str, cosigners: set[str]) -> str:
    return "valid" if party in cosigners else "absent"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def timeline_text(verified: VerifiedBundle) -> str:
    """Every pairing's timeline for a terminal, then a line on what the bundle holds."""
    # Names come from the log: shown with their control characters made visible.
    lines = [visible(line) for timeline in timelines(verified) for line in _lines(timeline)]
    lines.append(
        f"log {verified.bundle.server}: {verified.log.head.size} entries, "
        f"{len(verified.log.leaves)} in the bundle ({verified.bundle.scope}), "
        f"{withheld_text(verified)}"
    )
    return "\n".join(lines) + "\n"


def withheld_text(verified: VerifiedBundle) -> str:
    """How many entries the bundle withholds; check 6 let only a pairing's or a party's bundle
    withhold any, and nothing shows whose they are."""
    withheld = withheld_count(verified.bundle)
    return f"{withheld} withheld" + (" (other pairings' entries)" if withheld else "")


def verdict(verified: VerifiedBundle) -> str:
    """The last line of a verification that passed: every check, and what the log records as
    incomplete (a report some party never co-signed is a fact of the log, not a failure)."""
    unsigned = unsigned_reports(verified)
    if not unsigned:
        return "verified: every check passed"
    reports = "report" if unsigned == 1 else "reports"
    return f"verified: every check passed, with {unsigned} {reports} not signed by every party"


def _lines(timeline: PairingTimeline) -> Iterator[str]:
    yield f"pairing {timeline.pairing}"
    for event in timeline.events:
        when = rfc3339(event.when) if event.when else "-"
        yield f"  {event.index:>5}  {event.kind:<12}  {when:<20}  {event.what}"
        for label, findings in (("opened", event.opened), ("resolved", event.resolved)):
            for finding in findings:
                sha = finding.sha256 or "-"
                yield f"{'':>9}{label:<9}{finding.severity:<8}{finding.code:<24}{sha}"
        if event.signed:
            yield f"{'':>9}{'signed':<9}{event.signing()}"
