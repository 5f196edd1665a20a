"""`not-disclosed`: a CA certificate without a CCADB record 7 days after its notBefore.

Mozilla Root Store Policy 5.3.2 gives the root's CA owner 7 days to disclose a new CA
certificate, so the root must act. The rule judges only when CCADB data was imported at all
(some record of either side has a disclosure): without it, no record has one, and the rule
cannot tell "not disclosed" from "not imported", so it stays silent. Technically constrained
certificates are exempt (Mozilla Root Store Policy 5.3.1), expired ones no longer matter;
revoked ones must still be disclosed (as revoked), so they are judged.
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.findings import NOT_DISCLOSED, Finding, make_finding
from invsync.agent.reconcile.rules.context import DISCLOSURE_DAYS, Context, audit_capable


def check(ctx: Context) -> Iterable[Finding]:
    if not ctx.whole.disclosures_imported:
        return
    disclosed = ctx.disclosures()
    for sha, record in ctx.union().items():
        due = record.info.not_before + DISCLOSURE_DAYS
        if sha in disclosed or due > ctx.at:
            continue
        if ctx.expired(record) or not audit_capable(record):
            continue
        yield make_finding(
            NOT_DISCLOSED,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.root_party,
            due=due,
            message=(
                f"no CCADB record; {ctx.root_party} had to disclose it by {due:%Y-%m-%d}, "
                "7 days after its notBefore"
            ),
        )
