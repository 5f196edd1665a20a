"""`disappeared`: a certificate left a party's snapshot without being revoked or expiring.

DESIGN §5: a record is never silently forgotten. Dropping a live CA certificate from a list is
how the incident starts (a certificate nobody lists is a certificate nobody audits or revokes),
so the party that dropped it must list it again or revoke it. Revoked means by either party's
current or previous record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from invsync.agent.model.findings import DISAPPEARED, Finding, make_finding
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules.context import Context, describe, revocation_at


def check(ctx: Context) -> Iterable[Finding]:
    for side, current in ((ctx.root_side, ctx.root), (ctx.sub_side, ctx.sub)):
        yield from _gone(ctx, side, current)


def _gone(ctx: Context, side: Side, current: Mapping[str, CertRecord]) -> Iterable[Finding]:
    # The few no longer listed, sorted: not the 100,000 listed still (issue 13).
    gone = [record for record in side.previous or () if record.sha256 not in current]
    for record in sorted(gone, key=lambda r: r.sha256):
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
                f"{describe(record)} was in {side.party}'s previous snapshot and is not in its "
                "current one, though it is neither revoked nor expired"
            ),
        )
