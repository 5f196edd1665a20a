"""`audit-overdue`: CCADB shows no audit, or no current one, for a live CA certificate.

Audits are annual and CCADB Policy 5.2 gives 92 days after a period's end to publish the
report. So once a period ends, the report of the *following* period is due one year and 92 days
later; if CCADB's latest period of some audit kind ends before `at` - 365 - 92 days, the next
report is overdue (due = period end + 365 + 92 days). A certificate whose CCADB record lists no
audit at all, while not technically constrained (Mozilla Root Store Policy 5.3.1), is flagged
too, without a clock. Only certificates with a CCADB record are judged: the rest is
`not-disclosed`'s business.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from invsync.agent.model.facts import CcadbAudit, Disclosure
from invsync.agent.model.findings import (
    AUDIT_OVERDUE,
    MOZILLA_TECHNICALLY_CONSTRAINED,
    Finding,
    make_finding,
)
from invsync.agent.model.record import CertRecord
from invsync.agent.reconcile.rules.context import (
    AUDIT_PERIOD,
    AUDIT_REPORT_DAYS,
    Context,
    audit_capable,
    midnight,
)

CCADB_REVOKED = ("Revoked", "Parent Cert Revoked")


def check(ctx: Context) -> Iterable[Finding]:
    for sha, disclosure in ctx.disclosures().items():
        record = ctx.record(sha)
        if not _judged(ctx, record, disclosure):
            continue
        if not any(audit.period_end for audit in disclosure.audits):
            yield _no_audit(ctx, record)
            continue
        overdue = sorted(
            (next_report_due(end), kind)
            for kind, end in latest_period_ends(disclosure.audits).items()
            if next_report_due(end) < ctx.at
        )
        if overdue:
            yield _overdue(ctx, record, overdue)


def _judged(ctx: Context, record: CertRecord, disclosure: Disclosure) -> bool:
    constrained = disclosure.technically_constrained is True
    revoked = disclosure.revocation_status in CCADB_REVOKED
    return audit_capable(record) and not constrained and not revoked and ctx.live(record)


def latest_period_ends(audits: Iterable[CcadbAudit]) -> dict[str, date]:
    """The latest period end of each audit kind CCADB lists ("standard", "br", ...)."""
    latest: dict[str, date] = {}
    for audit in audits:
        if audit.period_end is not None:
            latest[audit.kind] = max(audit.period_end, latest.get(audit.kind, audit.period_end))
    return latest


def next_report_due(period_end: date) -> datetime:
    """When the report of the period following the one ending `period_end` is due."""
    return midnight(period_end) + AUDIT_PERIOD + AUDIT_REPORT_DAYS


def _no_audit(ctx: Context, record: CertRecord) -> Finding:
    return make_finding(
        AUDIT_OVERDUE,
        sha256=record.sha256,
        subject=record.info.subject,
        party=ctx.sub_party,
        policy=MOZILLA_TECHNICALLY_CONSTRAINED,
        message=(
            "CCADB lists no audit for it, though it is not technically constrained and "
            "neither revoked nor expired"
        ),
    )


def _overdue(ctx: Context, record: CertRecord, overdue: list[tuple[datetime, str]]) -> Finding:
    kinds = ", ".join(f"{kind} (due {due:%Y-%m-%d})" for due, kind in overdue)
    return make_finding(
        AUDIT_OVERDUE,
        sha256=record.sha256,
        subject=record.info.subject,
        party=ctx.sub_party,
        due=overdue[0][0],
        message=f"its next audit report is overdue in CCADB: {kinds}",
    )
