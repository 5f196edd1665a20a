"""The reconciliation rules of DESIGN §7, one small module each, registered in `RULES`.

Each rule is `check(ctx: Context) -> Iterable[Finding]` and builds findings of its one code.
`RULES` is ordered as `invsync rules` lists the catalogue; a test checks that the codes here
and in `agent.model.findings.CATALOGUE` agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from invsync.agent.model.findings import (
    ATTRIBUTION_CONFLICT,
    AUDIT_OVERDUE,
    DISAPPEARED,
    DOPPELGANGER_INCONSISTENT,
    DOPPELGANGER_UNTRACKED,
    LOG_SPLIT_VIEW,
    MISSING_AT_ROOT,
    MISSING_AT_SUBORDINATE,
    NOT_DISCLOSED,
    NOT_IN_AUDIT_SCOPE,
    PROFILE_DEVIATION,
    STALE_PEER,
    STATUS_MISMATCH,
    UNATTRIBUTED,
    UNUSED_NOT_REVOKED,
    Finding,
)
from invsync.agent.reconcile.rules import (
    attribution_conflict,
    audit_overdue,
    audit_scope,
    disappeared,
    disclosure,
    doppelganger,
    doppelganger_inconsistent,
    log_fork,
    missing,
    profile,
    stale_peer,
    status,
    unattributed,
    unused,
)
from invsync.agent.reconcile.rules.context import Context

Check = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A rule: the one code it reports, and the check that finds it."""

    code: str
    check: Check


RULES: tuple[Rule, ...] = (
    Rule(MISSING_AT_SUBORDINATE, missing.check_subordinate),
    Rule(MISSING_AT_ROOT, missing.check_root),
    Rule(STATUS_MISMATCH, status.check),
    Rule(DOPPELGANGER_UNTRACKED, doppelganger.check),
    Rule(DOPPELGANGER_INCONSISTENT, doppelganger_inconsistent.check),
    Rule(NOT_IN_AUDIT_SCOPE, audit_scope.check),
    Rule(AUDIT_OVERDUE, audit_overdue.check),
    Rule(UNUSED_NOT_REVOKED, unused.check),
    Rule(NOT_DISCLOSED, disclosure.check),
    Rule(PROFILE_DEVIATION, profile.check),
    Rule(UNATTRIBUTED, unattributed.check),
    Rule(ATTRIBUTION_CONFLICT, attribution_conflict.check),
    Rule(STALE_PEER, stale_peer.check),
    Rule(DISAPPEARED, disappeared.check),
    Rule(LOG_SPLIT_VIEW, log_fork.check),
)

__all__ = ["RULES", "Check", "Context", "Rule"]
