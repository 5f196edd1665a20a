"""Reconciliation (DESIGN §7): a pure function of both sides' records in scope and a clock.

Each rule is a small function `(Context) -> Iterable[Finding]` listed in `RULES`. A rule that
raises is replaced by one `rule-crashed` finding naming it and the exception (its partial output
is dropped, so a report never holds half a rule); the other rules still run. Findings come out
sorted by (code, sha256), so both agents and the server produce the same tuple.

Terms used in the rules, all evaluated at `at`:
- revoked: the record has a revocation with `revoked_at <= at` (a revocation scheduled for later
  does not count yet);
- expired: `not_after <= at`;
- live: neither revoked nor expired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from agent.errors import ReportError
from agent.findings import (
    DOPPELGANGER_UNTRACKED,
    MISSING_AT_ROOT,
    MISSING_AT_SUBORDINATE,
    RULE_CRASHED,
    STATUS_MISMATCH,
    Finding,
    Severity,
    make_finding,
)
from agent.model import Side
from agent.record import CertRecord, Revocation

DISCLOSURE_DAYS = timedelta(days=7)  # Mozilla Root Store Policy 5.3.2: disclose within 7 days
REVOCATION_DAYS = timedelta(days=7)  # TLS BR 4.9.1.2: revoke a subordinate CA within 7 days
DATE_TOLERANCE = timedelta(days=1)  # sources round revocation times; a day apart is the same

# Revoking one member of a same subject+key group for these reasons says the key itself is not
# to be trusted, so every member must go. Other reasons (superseded, cessationOfOperation) are
# what a reissue looks like: the replaced member is revoked and the new one stays.
KEY_REASONS = frozenset({"keyCompromise", "cACompromise"})


@dataclass(frozen=True)
class Context:
    """What every rule sees: both sides indexed by certificate SHA-256, and the clock."""

    root_party: str
    sub_party: str
    root: Mapping[str, CertRecord]
    sub: Mapping[str, CertRecord]
    at: datetime

    def union(self) -> dict[str, CertRecord]:
        """Every certificate either side lists (the root's record when both do)."""
        return {**self.sub, **self.root}

    def revoked(self, record: CertRecord) -> bool:
        return revocation_at(record, self.at) is not None

    def expired(self, record: CertRecord) -> bool:
        return record.info.not_after <= self.at


Rule = Callable[[Context], Iterable[Finding]]


def revocation_at(record: CertRecord, at: datetime) -> Revocation | None:
    """The record's revocation if it has taken effect at `at`."""
    revocation = record.revocation
    if revocation is None or revocation.revoked_at > at:
        return None
    return revocation


def describe(record: CertRecord) -> str:
    """How messages name a certificate: its subject and serial."""
    return f"{record.info.subject} (serial {record.info.serial_hex})"


def missing_at_subordinate(ctx: Context) -> Iterable[Finding]:
    """The root lists it, the subordinate does not (Mozilla bug 1695993).

    Error while live; warning once revoked (the key holder can no longer use it, but it must
    still be accounted for); notice once expired. The disclosure clock starts at issuance.
    """
    for sha, record in ctx.root.items():
        if sha in ctx.sub:
            continue
        yield make_finding(
            MISSING_AT_SUBORDINATE,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.sub_party,
            severity=_lifecycle_severity(ctx, record, live=Severity.ERROR),
            due=record.info.not_before + DISCLOSURE_DAYS,
            message=(
                f"{ctx.root_party} issued {describe(record)} to {ctx.sub_party}, "
                f"which does not list it{_state(ctx, record)}"
            ),
        )


def missing_at_root(ctx: Context) -> Iterable[Finding]:
    """The subordinate lists a CA certificate under the root's keys that the root does not.

    The root must know every certificate it signed from the moment it signed it, so the
    finding is due since notBefore.
    """
    for sha, record in ctx.sub.items():
        if sha in ctx.root:
            continue
        yield make_finding(
            MISSING_AT_ROOT,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.root_party,
            due=record.info.not_before,
            message=(
                f"{ctx.sub_party} lists {describe(record)}, signed by a key of "
                f"{ctx.root_party}, which does not list it{_state(ctx, record)}"
            ),
        )


def status_mismatch(ctx: Context) -> Iterable[Finding]:
    """Both list it but disagree on revocation.

    Revoked at one side only: error for the side that did not revoke, due 7 days after the
    revocation (BR 4.9.1.2). Both revoked, more than a day apart or for different reasons:
    warning for the root, whose CRL is authoritative.
    """
    for sha in sorted(ctx.root.keys() & ctx.sub.keys()):
        root_rev = revocation_at(ctx.root[sha], ctx.at)
        sub_rev = revocation_at(ctx.sub[sha], ctx.at)
        if (root_rev is None) != (sub_rev is None):
            yield _revoked_at_one_side(ctx, ctx.root[sha], root_rev, sub_rev)
        elif root_rev is not None and sub_rev is not None:
            yield from _revoked_differently(ctx, ctx.root[sha], root_rev, sub_rev)


def _revoked_at_one_side(
    ctx: Context, record: CertRecord, root_rev: Revocation | None, sub_rev: Revocation | None
) -> Finding:
    revoker, other, revocation = (
        (ctx.root_party, ctx.sub_party, root_rev)
        if root_rev is not None
        else (ctx.sub_party, ctx.root_party, sub_rev)
    )
    assert revocation is not None  # exactly one side revoked: the caller checked
    return make_finding(
        STATUS_MISMATCH,
        sha256=record.sha256,
        subject=record.info.subject,
        party=other,
        due=revocation.revoked_at + REVOCATION_DAYS,
        message=(
            f"{revoker} lists {describe(record)} as revoked on "
            f"{revocation.revoked_at:%Y-%m-%d} ({revocation.reason or 'no reason'}), "
            f"{other} lists it as not revoked"
        ),
    )


def _revoked_differently(
    ctx: Context, record: CertRecord, root_rev: Revocation, sub_rev: Revocation
) -> Iterable[Finding]:
    dates_differ = abs(root_rev.revoked_at - sub_rev.revoked_at) > DATE_TOLERANCE
    if not dates_differ and root_rev.reason == sub_rev.reason:
        return
    yield make_finding(
        STATUS_MISMATCH,
        sha256=record.sha256,
        subject=record.info.subject,
        party=ctx.root_party,
        severity=Severity.WARNING,
        message=(
            f"{describe(record)} is revoked at both sides but differently: "
            f"{ctx.root_party} says {_revocation_text(root_rev)}, "
            f"{ctx.sub_party} says {_revocation_text(sub_rev)}"
        ),
    )


def doppelganger_untracked(ctx: Context) -> Iterable[Finding]:
    """Certificates sharing subject and key (a doppelganger group, as CCADB and CRLite group
    issuers) that are not tracked alike; whoever holds the key can use every member.

    1. In a group where some member is listed by both sides, every member listed by one side
       only is flagged (the incident: the reissues were tracked, the originals were not).
    2. In a group where some member is revoked for a key reason (`KEY_REASONS`), every live
       member is flagged: the key is distrusted but still usable through it.

    Warning while the flagged member is live, notice once it is revoked or expired.
    """
    for members in _doppelganger_groups(ctx):
        yield from _untracked_members(ctx, members)
        yield from _unrevoked_members(ctx, members)


def _doppelganger_groups(ctx: Context) -> Iterable[list[CertRecord]]:
    groups: dict[str, list[CertRecord]] = {}
    for _, record in sorted(ctx.union().items()):
        groups.setdefault(record.info.doppelganger_key, []).append(record)
    return [members for members in groups.values() if len(members) > 1]


def _untracked_members(ctx: Context, members: Sequence[CertRecord]) -> Iterable[Finding]:
    tracked = [m for m in members if m.sha256 in ctx.root and m.sha256 in ctx.sub]
    if not tracked:
        return
    for member in members:
        if member.sha256 in {m.sha256 for m in tracked}:
            continue
        lister = ctx.root_party if member.sha256 in ctx.root else ctx.sub_party
        yield _doppelganger_finding(
            ctx,
            member,
            members,
            f"{describe(member)} shares subject and key with {_shas(tracked)}, listed by both "
            f"{ctx.root_party} and {ctx.sub_party}, but only {lister} lists it; "
            "whoever holds the key can use it too",
        )


def _unrevoked_members(ctx: Context, members: Sequence[CertRecord]) -> Iterable[Finding]:
    distrusted = [m for m in members if _key_reason(_revocations(ctx, m.sha256))]
    if not distrusted:
        return
    for member in members:
        if ctx.expired(member) or not _live_everywhere(ctx, member.sha256):
            continue
        yield _doppelganger_finding(
            ctx,
            member,
            members,
            f"{describe(member)} shares subject and key with {_shas(distrusted)}, revoked for "
            f"a key reason, but neither {ctx.root_party} nor {ctx.sub_party} lists it as "
            "revoked; whoever holds the key can use it",
        )


def _doppelganger_finding(
    ctx: Context, member: CertRecord, members: Sequence[CertRecord], message: str
) -> Finding:
    live = not ctx.expired(member) and _live_everywhere(ctx, member.sha256)
    return make_finding(
        DOPPELGANGER_UNTRACKED,
        sha256=member.sha256,
        subject=member.info.subject,
        party=ctx.sub_party,
        severity=Severity.WARNING if live else Severity.NOTICE,
        related=tuple(m.sha256 for m in members if m is not member),
        message=message,
    )


def _revocations(ctx: Context, sha: str) -> list[Revocation]:
    records = [side[sha] for side in (ctx.root, ctx.sub) if sha in side]
    return [rev for rev in (revocation_at(r, ctx.at) for r in records) if rev is not None]


def _live_everywhere(ctx: Context, sha: str) -> bool:
    """Revoked by neither side at `at`."""
    return not _revocations(ctx, sha)


def _key_reason(revocations: Sequence[Revocation]) -> bool:
    return any(rev.reason in KEY_REASONS for rev in revocations)


def _lifecycle_severity(ctx: Context, record: CertRecord, *, live: Severity) -> Severity:
    if ctx.expired(record):
        return Severity.NOTICE
    if ctx.revoked(record):
        return Severity.WARNING
    return live


def _state(ctx: Context, record: CertRecord) -> str:
    revocation = revocation_at(record, ctx.at)
    if ctx.expired(record):
        return f" (expired {record.info.not_after:%Y-%m-%d})"
    if revocation is not None:
        return f" (revoked {_revocation_text(revocation)})"
    return ""


def _revocation_text(revocation: Revocation) -> str:
    return f"{revocation.revoked_at:%Y-%m-%d} ({revocation.reason or 'no reason'})"


def _shas(records: Sequence[CertRecord]) -> str:
    return ", ".join(record.sha256 for record in records)


RULES: tuple[Rule, ...] = (
    missing_at_subordinate,
    missing_at_root,
    status_mismatch,
    doppelganger_untracked,
)


def reconcile(root: Side, sub: Side, at: datetime) -> tuple[Finding, ...]:
    """Every finding for the pairing (root, sub) at `at`, sorted by (code, sha256).

    Pure: no I/O, no clock but `at`. Each side must list a certificate at most once (snapshot
    acceptance guarantees it); a duplicate raises ReportError naming the party.
    """
    ctx = Context(root.party, sub.party, _index(root), _index(sub), at)
    findings = [finding for rule in RULES for finding in _run(rule, ctx)]
    return tuple(sorted(findings, key=lambda finding: finding.sort_key))


def _index(side: Side) -> dict[str, CertRecord]:
    index: dict[str, CertRecord] = {}
    for record in side.records:
        if record.sha256 in index:
            raise ReportError(f"{side.party} lists certificate {record.sha256} more than once")
        index[record.sha256] = record
    return index


def _run(rule: Rule, ctx: Context) -> list[Finding]:
    name = getattr(rule, "__name__", repr(rule))
    try:
        return list(rule(ctx))
    except Exception as e:  # DESIGN §7: a crashing check never stops the run
        return [
            make_finding(
                RULE_CRASHED,
                sha256="",
                subject="",
                party="",
                message=f"rule {name} crashed with {type(e).__name__}: {e}; "
                "its findings are missing from this run",
            )
        ]
