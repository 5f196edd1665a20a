"""`attribution-conflict`: the root's own sources name two operators for one CA certificate.

The agent decides who holds each certificate's key once, from its sources in order (issuance
log, CCADB owner, attribution rules, each root pairing's organizations: agent/inventory/
attribution.py), and keeps the first later source that named another operator. Such a
certificate is in the scope of the operator that decided, but the other one may believe it
holds it too, or the root's records are wrong: either way the two rules are named and the root
acts. Expired certificates are left out, as for `unattributed`.
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.inventory.attribution import conflict_of
from invsync.agent.model.findings import ATTRIBUTION_CONFLICT, Finding, make_finding
from invsync.agent.model.record import SHA256_OF as SHA256
from invsync.agent.reconcile.rules.context import Context


def check(ctx: Context) -> Iterable[Finding]:
    # The few with a conflict sorted, not every record (issue 13).
    found = [(r, c) for r in ctx.root.values() if (c := conflict_of(r.attribution)) is not None]
    for record, (decided, source, other) in sorted(found, key=lambda pair: SHA256(pair[0])):
        if ctx.expired(record):
            continue
        yield make_finding(
            ATTRIBUTION_CONFLICT,
            sha256=record.sha256,
            subject=record.info.subject,
            party=ctx.root_party,
            message=(
                f"{ctx.root_party} attributes it to {record.operator} by "
                f"{decided}, but {source} says {other}: its sources disagree on who holds "
                "its key"
            ),
        )
