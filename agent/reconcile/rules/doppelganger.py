"""`doppelganger-untracked`: a same subject+key group whose members are not tracked alike.

Certificates sharing subject and key (a doppelganger group, as CCADB and CRLite group issuers)
are one CA to whoever holds the key: it can use every member. (Audited alike is checked by
`not-in-audit-scope`, which flags every capable member an audit list leaves out.) A group
includes the subordinate's members that another root signed (`Context.others`, a cross-sign):
a revocation for a key reason at one root makes the other root's certificate a finding.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from operator import attrgetter

from invsync.agent.model.findings import DOPPELGANGER_UNTRACKED, Finding, Severity, make_finding
from invsync.agent.model.record import SHA256_OF as SHA256
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.reconcile.rules.context import (
    Context,
    revocation_at,
    short_shas,
)

# Revoking one member of a group for these reasons says the key itself is not to be trusted,
# so every member must go. Other reasons (superseded, cessationOfOperation) are what a reissue
# looks like: the replaced member is revoked and the new one stays.
KEY_REASONS = frozenset({"keyCompromise", "cACompromise"})


def check(ctx: Context) -> Iterable[Finding]:
    """1. In a group where some member is listed by both sides, every member listed by one side
    only is flagged (the incident: the reissues were tracked, the originals were not).
    2. In a group where some member is revoked for a key reason (`KEY_REASONS`), every live
    member is flagged: the key is distrusted but still usable through it.

    Warning while the flagged member is live, notice once it is revoked or expired.
    """
    for members in groups(ctx):
        yield from _untracked_members(ctx, members)
        yield from _unrevoked_members(ctx, members)


def groups(ctx: Context) -> list[list[CertRecord]]:
    """Every doppelganger group of the pairing with more than one member, members by SHA-256."""
    # union()'s records (the root's where both sides list one), counted by key in C: most
    # inventories have no group at all, and then no record is looked at one by one.
    records = [*ctx.root.values(), *(ctx.sub[sha] for sha in ctx.sub.keys() - ctx.root.keys())]
    # A cross-sign: the subordinate's certificates of the same key that another root signed.
    records += ctx.others.values()
    counts = Counter(map(GROUP_KEY, records))
    if len(counts) == len(records):
        return []
    shared = {key for key, n in counts.items() if n > 1}
    by_key: dict[str, list[CertRecord]] = {}
    for record in records:
        if record.info.doppelganger_key in shared:
            by_key.setdefault(record.info.doppelganger_key, []).append(record)
    # union()'s order, without sorting every certificate: members and groups by SHA-256.
    found = [sorted(members, key=SHA256) for members in by_key.values()]
    return sorted(found, key=lambda members: members[0].sha256)


# What a doppelganger group is keyed by: subject and key.
GROUP_KEY = attrgetter("info.doppelganger_key")


def _untracked_members(ctx: Context, members: Sequence[CertRecord]) -> Iterable[Finding]:
    tracked = [m for m in members if m.sha256 in ctx.root and m.sha256 in ctx.sub]
    if not tracked:
        return
    for member in members:
        if member.sha256 in ctx.others:
            continue  # another root's to list: its own pairing tracks it
        if member.sha256 in ctx.root and member.sha256 in ctx.sub:
            continue
        lister = ctx.root_party if member.sha256 in ctx.root else ctx.sub_party
        yield _finding(
            ctx,
            member,
            members,
            f"shares subject and key with {short_shas(tracked)}, listed by both "
            f"{ctx.root_party} and {ctx.sub_party}, but only {lister} lists it; "
            "whoever holds the key can use it too",
        )


def _unrevoked_members(ctx: Context, members: Sequence[CertRecord]) -> Iterable[Finding]:
    distrusted = [m for m in members if _key_reason(_revocations(ctx, m.sha256))]
    if not distrusted:
        return
    for member in members:
        if not ctx.live(member):
            continue
        yield _finding(
            ctx,
            member,
            members,
            f"shares subject and key with {short_shas(distrusted)}, revoked for "
            f"a key reason, but neither {ctx.root_party} nor {ctx.sub_party} lists it as "
            "revoked; whoever holds the key can use it",
        )


def _finding(
    ctx: Context, member: CertRecord, members: Sequence[CertRecord], message: str
) -> Finding:
    return make_finding(
        DOPPELGANGER_UNTRACKED,
        sha256=member.sha256,
        subject=member.info.subject,
        party=ctx.sub_party,
        severity=Severity.WARNING if ctx.live(member) else Severity.NOTICE,
        related=tuple(m.sha256 for m in members if m is not member),
        message=message,
    )


def _revocations(ctx: Context, sha: str) -> list[Revocation]:
    claims = (revocation_at(record, ctx.at) for record in ctx.records_of(sha))
    return [claim for claim in claims if claim is not None]


def _key_reason(revocations: Sequence[Revocation]) -> bool:
    return any(rev.reason in KEY_REASONS for rev in revocations)
