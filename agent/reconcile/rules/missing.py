"""`missing-at-subordinate` and `missing-at-root`: one party lists what the other does not."""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.findings import (
    MISSING_AT_ROOT,
    MISSING_AT_SUBORDINATE,
    Finding,
    Severity,
    make_finding,
)
from invsync.agent.model.record import CertRecord
from invsync.agent.reconcile.rules.context import DISCLOSURE_DAYS, Context, state


def check_subordinate(ctx: Context) -> Iterable[Finding]:
    """The root lists it, the subordinate does not (Mozilla bug 1695993).

    Error while live; warning once revoked (the key holder can no longer use it, but it must
    still be accounted for); notice once expired. The disclosure clock starts at issuance.
    """
    for sha in sorted(ctx.root.keys() - ctx.sub.keys()):
        record = ctx.root[sha]
        yield make_finding(
            MISSING_AT_SUBORDINATE,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.sub_party,
            severity=_lifecycle_severity(ctx, record),
            due=record.info.not_before + DISCLOSURE_DAYS,
            message=(
                f"{ctx.root_party} issued it to {ctx.sub_party}, "
                f"which does not list it{state(ctx, record)}"
            ),
        )


def check_root(ctx: Context) -> Iterable[Finding]:
    """The subordinate lists a CA certificate under the root's keys that the root does not.

    The root must know every certificate it signed from the moment it signed it, so the
    finding is due since notBefore.
    """
    for sha in sorted(ctx.sub.keys() - ctx.root.keys()):
        record = ctx.sub[sha]
        yield make_finding(
            MISSING_AT_ROOT,
            sha256=sha,
            subject=record.info.subject,
            party=ctx.root_party,
            due=record.info.not_before,
            message=(
                f"{ctx.sub_party} lists it, signed by a key of "
                f"{ctx.root_party}, which does not list it{state(ctx, record)}"
            ),
        )


def _lifecycle_severity(ctx: Context, record: CertRecord) -> Severity:
    if ctx.expired(record):
        return Severity.NOTICE
    if ctx.revoked(record):
        return Severity.WARNING
    return Severity.ERROR
