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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import RULE_CRASHED, Finding
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules.audit_overdue import next_report_due
from invsync.agent.reconcile.rules.context import (
    DISCLOSURE_DAYS,
    Context,
    by_sha256,
    midnight,
)
from invsync.agent.reconcile.runner import finish, rule_findings


@dataclass(frozen=True)
class Reconciled:
    """A reconciliation as the next one carries from it: both sides as compared, the clock,
    and the findings as the rules made them (without acknowledgements)."""

    root: Side
    sub: Side
    at: datetime
    findings: tuple[Finding, ...]


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
    ctx = Context.of(root, sub, at)
    again = None if before is None else _to_compare(ctx, before)
    if again is not None:
        part = Context.of(_part(root, again), _part(sub, again), at, ctx.whole)
        fresh = rule_findings(part)
        if not _crashed(fresh):
            assert before is not None  # `again` is None without it
            kept = [f for f in before.findings if f.sha256 and f.sha256 not in again]
            return _carried(root, sub, at, [*kept, *fresh], len(again), _count(ctx) - len(again))
    return _carried(root, sub, at, rule_findings(ctx), _count(ctx), 0)


def _carried(
    root: Side, sub: Side, at: datetime, raw: list[Finding], compared: int, carried: int
) -> Carried:
    made = tuple(raw)
    return Carried(finish(made, root, sub, at), compared, carried, Reconciled(root, sub, at, made))


def _count(ctx: Context) -> int:
    """The certificates a reconciliation of `ctx` judges: either side's, current or previous."""
    return len(_Held(ctx).certificates())


def _to_compare(ctx: Context, before: Reconciled) -> set[str] | None:
    """The certificates to compare again since `before`; None when everything must be."""
    now, then = _Held(ctx), _Held(Context.of(before.root, before.sub, before.at))
    if not _comparable(ctx, then.ctx) or _crashed(before.findings):
        return None
    changed = set()
    for one, other in zip(then.sides(), now.sides(), strict=True):
        changed |= _changed(one, other)
    low, high = sorted((then.ctx.at, ctx.at))
    due = {sha for sha in now.certificates() - changed if _due(now.records(sha), low, high)}
    return _closed(now, then, changed | due)


def _comparable(ctx: Context, then: Context) -> bool:
    """Whether a certificate's findings then can stand now: same parties, the same whole
    pairing's facts and profiles, and a previous snapshot at the same sides."""
    return (
        (ctx.root_party, ctx.sub_party) == (then.root_party, then.sub_party)
        and ctx.whole == then.whole
        and ctx.profiles() == then.profiles()
        and (ctx.root_side.previous is None) == (then.root_side.previous is None)
        and (ctx.sub_side.previous is None) == (then.sub_side.previous is None)
    )


def _crashed(findings: Iterable[Finding]) -> bool:
    return any(f.code == RULE_CRASHED for f in findings)


def _changed(then: Mapping[str, CertRecord], now: Mapping[str, CertRecord]) -> set[str]:
    """The certificates listed on one side only, or with another record."""
    found = then.keys() ^ now.keys()
    for sha in then.keys() & now.keys():
        one, other = then[sha], now[sha]
        if one is not other and one != other:
            found.add(sha)
    return found


class _Held:
    """A Context with its previous snapshots indexed, and the records that state a revocation
    or carry CRL evidence, by side."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.previous = (
            by_sha256(ctx.root_side.previous or ()),
            by_sha256(ctx.sub_side.previous or ()),
        )
        self.stating = (_stating(ctx, ctx.root), _stating(ctx, ctx.sub))

    def sides(self) -> tuple[Mapping[str, CertRecord], ...]:
        """Current root and subordinate, then previous root and subordinate."""
        return (self.ctx.root, self.ctx.sub, *self.previous)

    def certificates(self) -> set[str]:
        """Every certificate of either side, current or previous."""
        found = self.ctx.root.keys() | self.ctx.sub.keys()
        for previous in self.previous:
            found.update(previous)
        return found

    def records(self, sha: str) -> list[CertRecord]:
        """The certificate's records, current and previous, at both sides."""
        found = self.ctx.records_of(sha)
        found.extend(r for r in (p.get(sha) for p in self.previous) if r is not None)
        return found


def _due(records: Iterable[CertRecord], low: datetime, high: datetime) -> bool:
    """Whether an instant of `records` lies between the two clocks (both included: a rule
    compares with `<` or `<=`)."""
    return any(low <= instant <= high for record in records for instant in instants(record))


def instants(record: CertRecord) -> Iterator[datetime]:
    """Every instant of this record at which a rule's comparison with the clock can turn: its
    expiry, each revocation (its own and the CRLs'), its disclosure deadline (notBefore + 7
    days), CCADB's revocation date and CCADB's next audit report due. A rule that compares
    another instant with `ctx.at` must add it here (a test counts those comparisons)."""
    info = record.info
    yield info.not_before + DISCLOSURE_DAYS
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
                yield next_report_due(audit.period_end)


def _closed(now: _Held, then: _Held, seeds: set[str]) -> set[str]:
    """`seeds` with every certificate of a group one of them belongs to, until none is added:
    a certificate compared again needs its whole doppelganger group, and at each side the
    other records of its issuer that state a revocation (their CRLs are its issuer's)."""
    found, new = set(seeds), set(seeds)
    union = {**now.ctx.sub, **now.ctx.root}
    keys: set[str] = set()
    issuers: set[tuple[int, tuple[bytes, str | None]]] = set()
    while new:
        for sha in new:
            keys.update(r.info.doppelganger_key for r in (*now.records(sha), *then.records(sha)))
        for held in (now, then):
            for side, records in enumerate(held.stating):
                issuers.update((side, _issuer(r)) for r in records if r.sha256 in new)
        grown = {sha for sha, r in union.items() if r.info.doppelganger_key in keys}
        for side, records in enumerate(now.stating):
            grown.update(r.sha256 for r in records if (side, _issuer(r)) in issuers)
        new = grown - found
        found |= new
    return found


def _stating(ctx: Context, side: Mapping[str, CertRecord]) -> list[CertRecord]:
    """The side's records that state a revocation or carry CRL evidence, each once."""
    records = {r.sha256: r for r in ctx.having(side, "revocation")}
    records.update((r.sha256, r) for r in ctx.having(side, "revocation_evidence"))
    return list(records.values())


def _issuer(record: CertRecord) -> tuple[bytes, str | None]:
    return record.info.issuer_der, record.info.aki


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
