"""`stale-peer`: a party's snapshot has expired, or is older than its maximum age.

Findings are only as current as the snapshots they compare: a stale side hides whatever changed
since. The stale party must send a new snapshot. A side without a header (an offline comparison
of plain lists) has no age and is never stale. A party that has sent no snapshot at all is the
one finding of its pairing's reports until it does (`never_sent`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from invsync.agent.model.findings import STALE_PEER, Finding, make_finding
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules.context import Context


def check(ctx: Context) -> Iterable[Finding]:
    for side in (ctx.root_side, ctx.sub_side):
        problem = staleness(side, ctx)
        if problem:
            yield make_finding(
                STALE_PEER,
                sha256="",
                subject="",
                party=side.party,
                message=f"{side.party}'s snapshot {problem}; it must send a new one",
            )


def never_sent(party: str, pairing: str) -> Finding:
    """The one finding of a report made while `party` has sent no snapshot of the pairing.

    Nothing can be compared yet; the report exists so that both the server's schedule and the
    party that did send one show the silence instead of waiting for it.
    """
    return make_finding(
        STALE_PEER,
        sha256="",
        subject="",
        party=party,
        message=(
            f"{party} has not sent a snapshot of pairing {pairing} yet; nothing was compared. "
            f"It must configure its agent for the pairing and send one"
        ),
    )


def staleness(side: Side, ctx: Context) -> str:
    """Why the side's snapshot is stale at `ctx.at`, "" when it is not."""
    header = side.header
    if header is None:
        return ""
    issued = f"version {header.version} issued {header.issued_at:%Y-%m-%dT%H:%M:%SZ}"
    if header.expires_at <= ctx.at:
        return f"{issued} expired {header.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    if side.max_age is not None and header.issued_at + side.max_age < ctx.at:
        return f"{issued} is older than its maximum age of {_duration(side.max_age)}"
    return ""


def _duration(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} hours"
