"""`unattributed`: the root lists a CA certificate under its key without knowing its operator.

A certificate nobody is known to operate is a certificate nobody tracks (the root cannot tell
which subordinate must list, audit and revoke it). Only the root attributes: an issuance log's
operator, CCADB's owner or a configured rule (agent/inventory/attribution.py); only the root can fix
it.

A root side is judged when it comes from a snapshot (its agent ran attribution) or when it
attributes some record. A plain list given to `invsync reconcile --root` carries no operators
at all: every record would be flagged for what the list cannot say, so the rule stays silent.
Expired certificates are left out: nobody can issue from them any more.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import filterfalse

from invsync.agent.model.findings import UNATTRIBUTED, Finding, make_finding
from invsync.agent.model.record import SHA256_OF as SHA256
from invsync.agent.reconcile.rules.context import OPERATOR, Context


def check(ctx: Context) -> Iterable[Finding]:
    if not ctx.whole.root_attributes:
        return
    # The few without an operator, sorted: not every record the root lists (issue 13).
    for record in sorted(filterfalse(OPERATOR, ctx.root.values()), key=SHA256):
        sha = record.sha256
        if ctx.expired(record):
            continue
        yield make_finding(
            UNATTRIBUTED,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.root_party,
            message=(
                f"{ctx.root_party} lists it without an operator: no issuance "
                "log entry, CCADB owner or attribution rule says who holds its key"
            ),
        )
