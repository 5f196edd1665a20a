"""`doppelganger-inconsistent`: members of a same subject+key group audited, constrained or
revoked differently.

One key and subject are one CA to whoever holds the key, whichever of its certificates a path
uses; so what is said of one member is said of the CA, and a member said otherwise is the odd
one out (what crt.sh's Mozilla disclosures report lists as "inconsistent audit" and
"inconsistent technical constraint" details). Each member gets at most one finding, naming every
difference it has with the others, at the severity of the worst; its `related` are the other
members. Kinds of difference, each left alone where another rule already reports the fact:
- audit list: an audit names a member, another one was valid during its period, capable, and
  is not named. Error while that member is live, warning once it is revoked or expired (the
  audit that missed it is past). A live member left out of the latest audit of its operators
  is `not-in-audit-scope`'s finding, not this one's.
- CCADB audits: the latest period of an audit kind a member's CCADB record gives is older than
  a sibling's, or missing. Warning: the record is wrong, perhaps not the audit. Members CCADB
  exempts (revoked, expired, technically constrained) are not judged, nor one `audit-overdue`
  already flags for the same kind.
- technical constraint: a live member is not technically constrained while a live sibling is
  (by its extensions or per CCADB): the key issues without constraint through this member, so
  the CA earns no exemption by its constrained certificates. Warning, on the unconstrained
  member: revoking it is what makes the group consistent.
- revocation: a member revoked for a reason other than a key reason while a sibling was revoked
  for one: error, its reason hides a compromised key. A member revoked for a reason other than
  superseded (cessationOfOperation, privilegeWithdrawn, none...) while a sibling is live:
  notice, the reason says the CA stopped while it goes on. A live member beside a key-reason
  revocation is `doppelganger-untracked`'s; superseded beside a live sibling is a reissue.
A cross-sign's other root's certificate (`Context.others`) counts as a sibling but gets no
finding here: its own pairing judges it, beside this root's certificate.
The facts are both parties' (audit lists and revocations of either side's records, CCADB's
record as `Context.disclosures` holds it): each side recomputes the same findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.findings import (
    BR_REVOCATION,
    DOPPELGANGER_INCONSISTENT,
    MOZILLA_AUDIT_SCOPE,
    MOZILLA_TECHNICALLY_CONSTRAINED,
    Finding,
    Severity,
    make_finding,
)
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.reconcile.rules import audit_scope
from invsync.agent.reconcile.rules.audit_overdue import (
    CCADB_REVOKED,
    latest_period_ends,
    next_report_due,
)
from invsync.agent.reconcile.rules.context import Context, audit_capable, revocation_at
from invsync.agent.reconcile.rules.doppelganger import KEY_REASONS, groups

# The reason a reissue gives the certificate it replaces: its live siblings are no news.
REISSUE_REASON = "superseded"


@dataclass(frozen=True)
class Difference:
    """One way a member differs from its group: how bad, on what policy, in plain words."""

    severity: Severity
    policy: str
    text: str


def check(ctx: Context) -> Iterable[Finding]:
    for members in groups(ctx):
        for member in members:
            if member.sha256 in ctx.others:
                continue  # another root's certificate: judged in its own pairing, beside ours
            found = [*_differences(ctx, member, members)]
            if found:
                yield _finding(ctx, member, members, found)


def _differences(
    ctx: Context, member: CertRecord, members: Sequence[CertRecord]
) -> Iterator[Difference]:
    others = [m for m in members if m is not member]
    yield from _audit_lists(ctx, member, others)
    yield from _ccadb_audits(ctx, member, others)
    yield from _constraint(ctx, member, others)
    yield from _revocation(ctx, member, others)


def _finding(
    ctx: Context, member: CertRecord, members: Sequence[CertRecord], found: list[Difference]
) -> Finding:
    worst = min(found, key=lambda d: d.severity.rank)  # the first of the worst, in check order
    return make_finding(
        DOPPELGANGER_INCONSISTENT,
        sha256=member.sha256,
        subject=member.info.subject,
        party=ctx.sub_party,  # it holds the key, and tells the root what to revoke or correct
        severity=worst.severity,
        policy=worst.policy,
        related=tuple(m.sha256 for m in members if m is not member),
        message="; ".join(d.text for d in found),
    )


def _audit_lists(
    ctx: Context, member: CertRecord, others: Sequence[CertRecord]
) -> Iterator[Difference]:
    if not audit_capable(member):
        return
    listed = ctx.audit_listings()
    audits = {a for m in others for a in listed.get(m.sha256, ())}
    audits -= listed.get(member.sha256, frozenset())
    for audit in sorted(audits, key=_audit_order):
        if not _valid_during(ctx, member, audit) or audit_scope.flags(ctx, member, audit):
            continue
        covered = [m for m in others if audit in listed.get(m.sha256, ())]
        live = ctx.live(member)
        yield Difference(
            Severity.ERROR if live else Severity.WARNING,
            MOZILLA_AUDIT_SCOPE,
            f"valid during the period of the {_period(audit)} audit, whose list names its "
            f"doppelganger{_plural(covered)} {short(covered)} but not it",
        )


def _valid_during(ctx: Context, record: CertRecord, audit: AuditPeriod) -> bool:
    """The certificate could issue at some time of the audit's period."""
    if audit.period_end is None or record.info.not_before.date() > audit.period_end:
        return False
    start = audit.period_start
    if start is None:
        return True
    revocation = _revocation_of(ctx, record)
    revoked_before = revocation is not None and revocation.revoked_at.date() <= start
    return record.info.not_after.date() > start and not revoked_before


def _ccadb_audits(
    ctx: Context, member: CertRecord, others: Sequence[CertRecord]
) -> Iterator[Difference]:
    own = _judged_ccadb_ends(ctx, member)
    if own is None:
        return
    for kind, (end, sibling) in sorted(_latest_of_siblings(ctx, others).items()):
        mine = own.get(kind)
        if mine is not None and (mine >= end or next_report_due(mine) < ctx.at):
            continue  # as recent; or so old that `audit-overdue` flags it for this kind
        said = f"gives no {kind} audit"
        if mine is not None:
            said = f"gives the {kind} audit ending {mine:%Y-%m-%d}"
        yield Difference(
            Severity.WARNING,
            MOZILLA_AUDIT_SCOPE,
            f"its CCADB record {said}, while its doppelganger {short([sibling])}'s gives one "
            f"ending {end:%Y-%m-%d}",
        )


def _judged_ccadb_ends(ctx: Context, record: CertRecord) -> dict[str, date] | None:
    """The latest period end of each audit kind of a record CCADB wants audit details of (live,
    capable, not revoked nor constrained per CCADB, with some audit: `audit-overdue` flags one
    without), or None."""
    disclosure = ctx.disclosures().get(record.sha256)
    if disclosure is None or disclosure.revocation_status in CCADB_REVOKED:
        return None
    if disclosure.technically_constrained is True or not _live_capable(ctx, record):
        return None
    ends = latest_period_ends(disclosure.audits)
    return ends or None


def _latest_of_siblings(
    ctx: Context, others: Sequence[CertRecord]
) -> dict[str, tuple[date, CertRecord]]:
    """For each audit kind, the latest period end a judged sibling's CCADB record gives, and the
    first sibling (by SHA-256) that gives it."""
    latest: dict[str, tuple[date, CertRecord]] = {}
    for sibling in others:
        for kind, end in (_judged_ccadb_ends(ctx, sibling) or {}).items():
            if kind not in latest or end > latest[kind][0]:
                latest[kind] = (end, sibling)
    return latest


def _constraint(
    ctx: Context, member: CertRecord, others: Sequence[CertRecord]
) -> Iterator[Difference]:
    if not _live_capable(ctx, member) or _constrained(ctx, member):
        return
    bound = [m for m in others if ctx.live(m) and _constrained(ctx, m)]
    if bound:
        yield Difference(
            Severity.WARNING,
            MOZILLA_TECHNICALLY_CONSTRAINED,
            f"not technically constrained while its doppelganger{_plural(bound)} {short(bound)} "
            f"{_are(bound)}: the key issues without constraint through this one, so revoke it or "
            "audit and disclose the CA as capable",
        )


def _constrained(ctx: Context, record: CertRecord) -> bool:
    disclosure = ctx.disclosures().get(record.sha256)
    per_ccadb = disclosure is not None and disclosure.technically_constrained is True
    return record.info.technically_constrained or per_ccadb


def _live_capable(ctx: Context, record: CertRecord) -> bool:
    return record.info.is_ca and ctx.live(record)


def _revocation(
    ctx: Context, member: CertRecord, others: Sequence[CertRecord]
) -> Iterator[Difference]:
    revocation = _revocation_of(ctx, member)
    if revocation is None or revocation.reason in KEY_REASONS:
        return  # a live sibling of a key-reason revocation is `doppelganger-untracked`'s
    said = f"revoked ({revocation.reason or 'no reason'}) on {revocation.revoked_at:%Y-%m-%d}"
    distrusted = [m for m in others if _key_reason(ctx, m)]
    if distrusted:
        reasons = sorted({_reason(ctx, m) for m in distrusted})
        yield Difference(
            Severity.ERROR,
            BR_REVOCATION,
            f"{said} while its doppelganger{_plural(distrusted)} {short(distrusted)} "
            f"{_was(distrusted)} revoked for {' and '.join(reasons)}: its reason must say the "
            "key is compromised too",
        )
        return
    live = [m for m in others if ctx.live(m)]
    if live and revocation.reason != REISSUE_REASON:
        yield Difference(
            Severity.NOTICE,
            BR_REVOCATION,
            f"{said} while its doppelganger{_plural(live)} {short(live)} {_are(live)} live: "
            f"revoke {_them(live)} too if the CA stopped, or give superseded as the reason if "
            "this one was replaced",
        )


def _revocation_of(ctx: Context, record: CertRecord) -> Revocation | None:
    """The certificate's revocation in effect at either side, a key reason first, then the
    earliest (the root's on a tie): what the group is judged by."""
    claims = [
        claim
        for claim in (revocation_at(r, ctx.at) for r in ctx.records_of(record.sha256))
        if claim is not None
    ]
    if not claims:
        return None
    return min(claims, key=lambda c: (c.reason not in KEY_REASONS, c.revoked_at))


def _key_reason(ctx: Context, record: CertRecord) -> bool:
    revocation = _revocation_of(ctx, record)
    return revocation is not None and revocation.reason in KEY_REASONS


def _reason(ctx: Context, record: CertRecord) -> str:
    revocation = _revocation_of(ctx, record)
    return "" if revocation is None else revocation.reason


def _audit_order(audit: AuditPeriod) -> tuple[str, str, str]:
    return (audit.kind, str(audit.period_end), str(audit.period_start))


def _period(audit: AuditPeriod) -> str:
    start = f"{audit.period_start:%Y-%m-%d}" if audit.period_start else "?"
    return f"{audit.kind or 'unnamed'} {start}..{audit.period_end:%Y-%m-%d}"


def short(records: Sequence[CertRecord]) -> str:
    """Other members, as messages name them: the first 16 hex digits of each SHA-256."""
    return ", ".join(record.sha256[:16] for record in records)


def _plural(records: Sequence[CertRecord]) -> str:
    return "s" if len(records) > 1 else ""


def _are(records: Sequence[CertRecord]) -> str:
    return "are" if len(records) > 1 else "is"


def _them(records: Sequence[CertRecord]) -> str:
    return "them" if len(records) > 1 else "it"


def _was(records: Sequence[CertRecord]) -> str:
    return "were" if len(records) > 1 else "was"
