"""A reconciliation carried from the one before (issue 13): only what could change is compared.

A finding about one certificate is a function of a few things alone (DESIGN §7, the rules):
- its records at both sides, and in both sides' previous snapshots (`disappeared`);
- the clock, through the instants its records name (`instants`), where a rule's comparison
  with `at` can turn;
- the other members of its doppelganger group (`doppelganger-untracked`), and the CRL entries
  its party's other records of the same issuer carry (`status-mismatch` against CRLs);
- what depends on the whole pairing (`Whole`) and the declared profiles.

So given the reconciliation before (its sides, its clock and its findings as the rules made
them), the certificates are compared again only when one of those changed: their records, or
an instant of theirs between the two clocks, and with them every certificate of a group they
belong to. The others keep the findings they had. When the whole pairing's facts, the profiles,
the parties or the presence of a previous snapshot changed, or a rule crashed, everything is
compared again. Either way the findings are exactly those `reconcile` gives: a differential
test holds them to each other over random changes and clock jumps (tests/test_carry.py).

The findings about no certificate (`stale-peer`, `log-split-view`) read the headers alone and
are made again each time; acknowledgements are applied to all findings each time, at `at`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial

from invsync.agent.model.findings import RULE_CRASHED, Finding
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules.audit_overdue import next_report_due
from invsync.agent.reconcile.rules.context import DISCLOSURE_DAYS, Context, midnight
from invsync.agent.reconcile.rules.doppelganger import groups
from invsync.agent.reconcile.rules.status_public import issuer_of, stating
from invsync.agent.reconcile.runner import finish, rule_findings
from invsync.agent.reconcile.side_index import by_sha256


@dataclass(frozen=True)
class Reconciled:
    """A reconciliation as the next one carries from it: both sides as compared, the clock,
    and the findings as the rules made them (without acknowledgements)."""

    root: Side
    sub: Side
    at: datetime
    findings: tuple[Finding, ...]
    # The sides indexed, as the reconciliation made or carried them: the next one reads them.
    held: _Held | None = field(default=None, repr=False, compare=False)

    def indexed(self) -> _Held:
        return self.held or _Held(Context.of(self.root, self.sub, self.at))


@dataclass(frozen=True)
class Carried:
    """What `reconcile_carried` gives: the findings (`reconcile`'s), how many certificates were
    compared again and how many kept their findings, and what the next one carries from."""

    findings: tuple[Finding, ...]
    compared: int
    carried: int
    reconciled: Reconciled


def reconcile_carried(root: Side, sub: Side, at: datetime, before: Reconciled | None) -> Carried:
    """`reconcile(root, sub, at)`, comparing again only what could have changed since
    `before` (None: everything is compared)."""
    now = _Held(Context.of(root, sub, at))
    if before is not None:
        then = before.indexed()
        again = _to_compare(now, then, before.findings)
        if again is not None:
            part = Context.of(_part(root, again), _part(sub, again), at, now.ctx.whole)
            fresh = rule_findings(part)
            # A crash is reported as the full run reports it (once more in the log).
            if not _crashed(fresh):
                now.carry_instants(then, again)
                kept = [f for f in before.findings if f.sha256 and f.sha256 not in again]
                return _carried(now, [*kept, *fresh], len(again & now.certificates))
    return _carried(now, rule_findings(now.ctx), len(now.certificates))


def _carried(now: _Held, raw: list[Finding], compared: int) -> Carried:
    ctx, made = now.ctx, tuple(raw)
    root, sub = ctx.root_side, ctx.sub_side
    reconciled = Reconciled(root, sub, ctx.at, made, now)
    carried = len(now.certificates) - compared
    return Carried(finish(made, root, sub, ctx.at), compared, carried, reconciled)


def _to_compare(now: _Held, then: _Held, findings: tuple[Finding, ...]) -> set[str] | None:
    """The certificates to compare again since `then`, which found `findings`; None when
    everything must be."""
    if not _comparable(now, then) or _crashed(findings):
        return None
    changed: set[str] = set()
    for side in range(4):
        changed |= _changed(then, now, side)
    low, high = sorted((then.ctx.at, now.ctx.at))
    return _closed(now, then, changed | then.due(low, high))


def _comparable(now: _Held, then: _Held) -> bool:
    """Whether a certificate's findings then can stand now: same parties, the same whole
    pairing's facts and profiles, and a previous snapshot at the same sides, listing each
    certificate once (`disappeared` reports each copy of a list that is no snapshot)."""
    ctx, before = now.ctx, then.ctx
    return (
        # A cross-sign's other certificates are seen by one rule alone: rare, compared anew.
        not ctx.others
        and not before.others
        and now.previous_listed_once()
        and then.previous_listed_once()
        and (ctx.root_party, ctx.sub_party) == (before.root_party, before.sub_party)
        and ctx.whole == before.whole
        and ctx.profiles() == before.profiles()
        and (ctx.root_side.previous is None) == (before.root_side.previous is None)
        and (ctx.sub_side.previous is None) == (before.sub_side.previous is None)
    )


def _crashed(findings: Iterable[Finding]) -> bool:
    return any(f.code == RULE_CRASHED for f in findings)


def _changed(then: _Held, now: _Held, side: int) -> set[str]:
    """The certificates listed at one time only at `side` (0, 1: current root, subordinate;
    2, 3: previous), or with another record object. A record kept from one reconciliation to
    the next is the same object (a snapshot is decoded once, and its records are shared by
    their bytes with the next one's): any other is compared again, because records that
    compare equal can still differ in what a rule reads (a time in another zone, 1 for True)."""
    return {sha for sha, _ in then.ids[side].items() ^ now.ids[side].items()}


class _Held:
    """A Context with its previous snapshots indexed, and the records that state a revocation
    or carry CRL evidence, by side and certificate."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.previous = (
            by_sha256(ctx.root_side.previous or ()),
            by_sha256(ctx.sub_side.previous or ()),
        )
        self.stating = (stating(ctx, ctx.root), stating(ctx, ctx.sub))

    def previous_listed_once(self) -> bool:
        """Whether each previous list names a certificate once (its index lost no record)."""
        sides = (self.ctx.root_side, self.ctx.sub_side)
        return all(
            len(index) == len(side.previous or ())
            for index, side in zip(self.previous, sides, strict=True)
        )

    def sides(self) -> tuple[Mapping[str, CertRecord], ...]:
        """Current root and subordinate, then previous root and subordinate."""
        return (self.ctx.root, self.ctx.sub, *self.previous)

    @cached_property
    def certificates(self) -> frozenset[str]:
        """Every certificate of either side, current or previous."""
        found = self.ctx.root.keys() | self.ctx.sub.keys()
        for previous in self.previous:
            found.update(previous)
        return frozenset(found)

    def records(self, sha: str) -> list[CertRecord]:
        """The certificate's records, current and previous, at both sides."""
        found = self.ctx.records_of(sha)
        found.extend(r for r in (p.get(sha) for p in self.previous) if r is not None)
        return found

    @cached_property
    def ids(self) -> tuple[dict[str, int], ...]:
        """Each side's records by certificate, as object identities (`sides`' order)."""
        return tuple(
            dict(zip(side.keys(), map(id, side.values()), strict=True)) for side in self.sides()
        )

    @cached_property
    def instants(self) -> list[tuple[datetime, str]]:
        """Every instant of every certificate's records (`instants`), sorted."""
        return sorted(
            (instant, sha)
            for sha in self.certificates
            for record in self.records(sha)
            for instant in instants(record)
        )

    def carry_instants(self, then: _Held, again: set[str]) -> None:
        """Take the instants of the certificates not compared again from `then` (their records
        are the same), and work out only the others'."""
        kept = [entry for entry in then.instants if entry[1] not in again]
        fresh = [
            (instant, sha)
            for sha in again
            for record in self.records(sha)
            for instant in instants(record)
        ]
        # Set where cached_property keeps what it computed: `instants` then reads these.
        self.__dict__["instants"] = sorted([*kept, *fresh])

    def due(self, low: datetime, high: datetime) -> set[str]:
        """The certificates with an instant between the two clocks (both included: a rule
        compares with `<` or `<=`)."""
        entries = self.instants
        first = bisect_left(entries, (low, ""))
        last = bisect_right(entries, (high, _AFTER_EVERY_SHA))
        return {sha for _, sha in entries[first:last]}

    @cached_property
    def members(self) -> dict[str, list[str]]:
        """The certificates of each doppelganger group of more than one, by key."""
        return {
            group[0].info.doppelganger_key: [r.sha256 for r in group] for group in groups(self.ctx)
        }

    @cached_property
    def by_issuer(self) -> dict[tuple[int, tuple[bytes, str | None]], list[str]]:
        """At each side (0 root, 1 subordinate), the records stating a revocation or carrying
        CRL evidence, by issuer."""
        found: dict[tuple[int, tuple[bytes, str | None]], list[str]] = {}
        for side, records in enumerate(self.stating):
            for sha, record in records.items():
                found.setdefault((side, issuer_of(record)), []).append(sha)
        return found

    def issuers_of(self, sha: str) -> Iterator[tuple[int, tuple[bytes, str | None]]]:
        """The certificate's issuer at each side where its record states a revocation."""
        for side, records in enumerate(self.stating):
            record = records.get(sha)
            if record is not None:
                yield side, issuer_of(record)


_AFTER_EVERY_SHA = "~"  # sorts after every uppercase hex SHA-256


def instants(record: CertRecord) -> Iterator[datetime]:
    """Every instant of this record at which a rule's comparison with the clock can turn: its
    expiry, each revocation (its own and the CRLs'), its disclosure deadline (notBefore + 7
    days), CCADB's revocation date and CCADB's next audit report due. A rule that compares
    another instant with `ctx.at` must add it here (a test counts those comparisons)."""
    info = record.info
    yield from _reachable(lambda: info.not_before + DISCLOSURE_DAYS)
    yield info.not_after
    if record.revocation is not None:
        yield record.revocation.revoked_at
    for claim in record.revocation_evidence:
        yield claim.revoked_at
    disclosure = record.disclosure
    if disclosure is not None:
        if disclosure.revocation_date is not None:
            yield midnight(disclosure.revocation_date)
        for audit in disclosure.audits:
            if audit.period_end is not None:
                yield from _reachable(partial(next_report_due, audit.period_end))


def _reachable(instant: Callable[[], datetime]) -> Iterator[datetime]:
    """The instant, unless past the last datetime: no clock reaches it (the rule that computes
    it crashes instead, and a crash compares everything)."""
    try:
        yield instant()
    except OverflowError:
        return


def _closed(now: _Held, then: _Held, seeds: set[str]) -> set[str]:
    """`seeds` with every certificate of a group one of them belongs to, until none is added:
    a certificate compared again needs its whole doppelganger group, then or now (a group
    left with one member changes that member's findings too), and at each side the records
    of its issuer, then or now, that state a revocation now (their CRLs are its issuer's; one
    that stated one then and no more is changed, so among the seeds)."""
    found, new = set(seeds), set(seeds)
    while new:
        grown: set[str] = set()
        for sha in new:
            for held in (now, then):
                for record in held.ctx.records_of(sha):
                    key = record.info.doppelganger_key
                    grown.update(now.members.get(key, ()), then.members.get(key, ()))
                for issuer in held.issuers_of(sha):
                    grown.update(now.by_issuer.get(issuer, ()))
        new = grown - found
        found |= new
    return found


def _part(side: Side, shas: set[str]) -> Side:
    """`side` with the certificates `shas` alone, in the current and the previous snapshot."""
    previous = side.previous
    return Side(
        side.party,
        _only(side.records, shas),
        header=side.header,
        previous=None if previous is None else tuple(_only(previous, shas)),
        max_age=side.max_age,
    )


def _only(records: Sequence[CertRecord], shas: set[str]) -> list[CertRecord]:
    return [record for record in records if record.sha256 in shas]
