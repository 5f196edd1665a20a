"""`disappeared`: a certificate left a party's snapshot without being revoked or expiring.

DESIGN §5: a record is never silently forgotten. Dropping a live CA certificate from a list is
how the incident starts (a certificate nobody lists is a certificate nobody audits or revokes),
so the party that dropped it must list it again or revoke it. Revoked means by either party's
current or previous record.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable, Mapping, Sequence

from invsync.agent.model.findings import DISAPPEARED, Finding, make_finding
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules.context import Context, revocation_at
from invsync.agent.reconcile.side_index import by_sha256


def check(ctx: Context) -> Iterable[Finding]:
    # The subordinate's current list: its cross-signed certificates are in it too.
    sub = ChainMap(dict(ctx.sub), dict(ctx.others)) if ctx.others else ctx.sub
    for side, current in ((ctx.root_side, ctx.root), (ctx.sub_side, sub)):
        yield from _gone(ctx, side, current)


def _gone(ctx: Context, side: Side, current: Mapping[str, CertRecord]) -> Iterable[Finding]:
    # The few no longer listed, sorted: not the 100,000 listed still (issue 13).
    gone = _gone_records(side.previous or (), current)
    for record in gone:
        if ctx.expired(record):
            continue
        if revocation_at(record, ctx.at) or ctx.revoked_anywhere(record.sha256):
            continue
        yield make_finding(
            DISAPPEARED,
            sha256=record.sha256,
            subject=record.info.subject,
            party=side.party,
            message=(
                f"it was in {side.party}'s previous snapshot and is not in its current one, "
                "though it is neither revoked nor expired"
            ),
        )


def _gone_records(
    previous: Sequence[CertRecord], current: Mapping[str, CertRecord]
) -> list[CertRecord]:
    """The previous records not listed now, by SHA-256, found by a set difference in C."""
    by_sha = by_sha256(previous)
    if len(by_sha) != len(previous):  # not from a snapshot (those list each once): each one
        gone = [record for record in previous if record.sha256 not in current]
        return sorted(gone, key=lambda r: r.sha256)
    return [by_sha[sha] for sha in sorted(by_sha.keys() - current.keys())]
