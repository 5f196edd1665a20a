"""`status-mismatch`: the parties, their CRL evidence and CCADB disagree on a revocation.

Three comparisons, one code (a revocation is one fact, whoever states it):
- the two parties' records (here);
- each party's own claim against the verified CRL entries it imported, and
- each party's record against CCADB's revocation status (both in
`agent.reconcile.rules.status_public`).
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.findings import STATUS_MISMATCH, Finding, Severity, make_finding
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.reconcile.rules import status_public
from invsync.agent.reconcile.rules.context import (
    REVOCATION_DAYS,
    Context,
    revocation_at,
    revocation_text,
    revocations_differ,
)


def check(ctx: Context) -> Iterable[Finding]:
    yield from between_parties(ctx)
    yield from status_public.against_crls(ctx)
    yield from status_public.against_ccadb(ctx)


def between_parties(ctx: Context) -> Iterable[Finding]:
    """Both list it but disagree on revocation.

    Revoked at one side only: error for the side that did not revoke, due 7 days after the
    revocation (BR 4.9.1.2). Both revoked, more than a day apart or for different reasons:
    warning for the root, whose CRL is authoritative.
    """
    root, sub = ctx.root, ctx.sub
    # Only a certificate revoked at either side can disagree: those few are sorted.
    revoked = {r.sha256 for r in ctx.having(root, "revocation") if r.sha256 in sub}
    revoked.update(r.sha256 for r in ctx.having(sub, "revocation") if r.sha256 in root)
    for sha in sorted(revoked):
        root_rev = revocation_at(ctx.root[sha], ctx.at)
        sub_rev = revocation_at(ctx.sub[sha], ctx.at)
        if root_rev is not None and sub_rev is None:
            yield _revoked_at_one_side(ctx, ctx.root[sha], ctx.root_party, ctx.sub_party, root_rev)
        elif sub_rev is not None and root_rev is None:
            yield _revoked_at_one_side(ctx, ctx.root[sha], ctx.sub_party, ctx.root_party, sub_rev)
        elif root_rev is not None and sub_rev is not None and revocations_differ(root_rev, sub_rev):
            yield make_finding(
                STATUS_MISMATCH,
                sha256=sha,
                subject=ctx.root[sha].info.subject,
                party=ctx.root_party,
                severity=Severity.WARNING,
                message=(
                    f"revoked at both sides but differently: "
                    f"{ctx.root_party} says {revocation_text(root_rev)}, "
                    f"{ctx.sub_party} says {revocation_text(sub_rev)}"
                ),
            )


def _revoked_at_one_side(
    ctx: Context, record: CertRecord, revoker: str, other: str, revocation: Revocation
) -> Finding:
    return make_finding(
        STATUS_MISMATCH,
        sha256=record.sha256,
        subject=record.info.subject,
        party=other,
        due=revocation.revoked_at + REVOCATION_DAYS,
        message=(
            f"{revoker} lists it as revoked on "
            f"{revocation_text(revocation)}, {other} lists it as not revoked"
        ),
    )
