"""`unused-not-revoked`: a CA certificate nobody uses, still valid and not revoked.

The incident's remedy in one rule: the two reissued-and-forgotten certificates were never used,
and an unused CA certificate is a key nobody watches. Either party marking it `unused` or
`decommissioned` is enough. The subordinate holds the key and must have it revoked; the root
can revoke it too, and the message names both. BR 4.9.1.2 gives 7 days from when the reason
arose; records carry no date for a lifecycle change, so the clock starts at notBefore (a
certificate that was never used was unused from its first day).
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.findings import UNUSED_NOT_REVOKED, Finding, make_finding
from invsync.agent.reconcile.rules.context import REVOCATION_DAYS, Context

UNUSED = ("unused", "decommissioned")


def check(ctx: Context) -> Iterable[Finding]:
    for sha in ctx.with_view("lifecycle"):
        record = ctx.record(sha)
        marks = {
            (party, r.lifecycle)
            for party, r in ((ctx.root_party, ctx.root.get(sha)), (ctx.sub_party, ctx.sub.get(sha)))
            if r is not None and r.lifecycle in UNUSED
        }
        if not marks or not ctx.live(record):
            continue
        said = " and ".join(f"{party} marks it {lifecycle}" for party, lifecycle in sorted(marks))
        yield make_finding(
            UNUSED_NOT_REVOKED,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.sub_party,
            due=record.info.not_before + REVOCATION_DAYS,
            message=(
                f"valid until {record.info.not_after:%Y-%m-%d} and not revoked, but {said}; "
                f"{ctx.sub_party} must have it revoked "
                f"({ctx.root_party} can revoke it too)"
            ),
        )
