"""`not-in-audit-scope`: a CA certificate that can issue but that an audit left out.

The incident's heart: JPRS's audit listed the reissued certificates, not the two unused ones.
The audits known to the pairing are the distinct `AuditPeriod`s of its records' audit scope
entries (an audit list is imported with its period). An audit belongs to the operators of the
certificates it lists; it must list every certificate of those operators that was issued by the
end of its period and is still live and not technically constrained (Mozilla Root Store Policy
3.1.3). Of each kind of audit only the latest period counts: a later list supersedes an earlier
one, and what the earlier one missed is judged by the later one. The clock is the audit report's
(CCADB Policy 5.2): 92 days after the period's end.
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.findings import NOT_IN_AUDIT_SCOPE, Finding, make_finding
from invsync.agent.model.record import CertRecord
from invsync.agent.reconcile.rules.context import (
    AUDIT_REPORT_DAYS,
    Context,
    audit_capable,
    midnight,
)


def check(ctx: Context) -> Iterable[Finding]:
    listed = ctx.audit_listings()
    for audit, operators in ctx.whole.audits:
        for sha, record in ctx.union().items():
            if audit in listed.get(sha, ()) or ctx.operator_of(sha) not in operators:
                continue
            if _must_be_listed(ctx, record, audit):
                yield _finding(ctx, record, audit)


def flags(ctx: Context, record: CertRecord, audit: AuditPeriod) -> bool:
    """This rule makes a finding of `record` for `audit` if the audit's list leaves it out
    (`doppelganger-inconsistent` leaves those to it)."""
    operators = dict(ctx.whole.audits).get(audit)
    if operators is None or ctx.operator_of(record.sha256) not in operators:
        return False
    return _must_be_listed(ctx, record, audit)


def _must_be_listed(ctx: Context, record: CertRecord, audit: AuditPeriod) -> bool:
    assert audit.period_end is not None  # Whole.audits holds only audits with an end
    issued_in_time = record.info.not_before.date() <= audit.period_end
    return issued_in_time and audit_capable(record) and ctx.live(record)


def _finding(ctx: Context, record: CertRecord, audit: AuditPeriod) -> Finding:
    assert audit.period_end is not None
    start = f"{audit.period_start:%Y-%m-%d}" if audit.period_start else "?"
    return make_finding(
        NOT_IN_AUDIT_SCOPE,
        sha256=record.sha256,
        subject=record.info.subject,
        party=ctx.sub_party,
        due=midnight(audit.period_end) + AUDIT_REPORT_DAYS,
        message=(
            f"issued {record.info.not_before:%Y-%m-%d}, not technically constrained and "
            f"neither revoked nor expired, but absent from the {audit.kind or 'audit'} list "
            f"for {start}..{audit.period_end:%Y-%m-%d}"
        ),
    )
