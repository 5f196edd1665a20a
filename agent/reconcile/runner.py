"""Reconciliation (DESIGN §7): a pure function of both sides, their snapshots and a clock.

The rules live in `agent.reconcile.rules`, one module each; this module runs them. A rule that
raises is replaced by one `rule-crashed` finding naming it and the exception (its partial output is
dropped, so a report never holds half a rule); the other rules still run. Findings come out
sorted by (code, sha256), so both agents and the server produce the same tuple.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from invsync.agent.model.acknowledgements import apply_acknowledgements
from invsync.agent.model.findings import RULE_CRASHED, Finding, make_finding
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules import RULES, Context, Rule

__all__ = ["RULES", "Context", "Rule", "finish", "reconcile", "rule_findings"]

log = logging.getLogger(__name__)


def reconcile(root: Side, sub: Side, at: datetime) -> tuple[Finding, ...]:
    """Every finding for the pairing (root, sub) at `at`, sorted by (code, sha256).

    A finding is marked acknowledged when the party that must act acknowledged it in its
    snapshot's header and that acknowledgement is in force at `at` (`agent.model.acknowledgements`).
    A function of its arguments alone (no clock but `at`; its only effect is a log line for a
    crashing rule). Each side must list a certificate at most once (snapshot
    acceptance guarantees it); a duplicate raises ReportError naming the party.
    """
    return finish(rule_findings(Context.of(root, sub, at)), root, sub, at)


def rule_findings(ctx: Context) -> list[Finding]:
    """What the rules find in `ctx`, as they make it: neither acknowledged nor sorted."""
    pairing = _pairing(ctx.root_side, ctx.sub_side)
    return [finding for rule in RULES for finding in _run(rule, ctx, pairing)]


def finish(findings: Iterable[Finding], root: Side, sub: Side, at: datetime) -> tuple[Finding, ...]:
    """The rules' `findings`, each marked with the acknowledgement in force at `at`, sorted."""
    acks = {side.party: side.header.acknowledgements for side in (root, sub) if side.header}
    marked = apply_acknowledgements(findings, acks, at)
    return tuple(sorted(marked, key=lambda finding: finding.sort_key))


def _pairing(root: Side, sub: Side) -> str:
    """The pairing both snapshots name; "" for an offline comparison of plain lists."""
    header = root.header or sub.header
    return header.pairing if header else ""


def _run(rule: Rule, ctx: Context, pairing: str) -> list[Finding]:
    try:
        return list(rule.check(ctx))
    except Exception as e:  # DESIGN §7: a crashing check never stops the run
        # The finding carries one line; whoever fixes the rule needs the traceback, so it is
        # logged here, where it still exists.
        log.exception("rule %s crashed", rule.code, extra={"rule": rule.code, "pairing": pairing})
        return [
            make_finding(
                RULE_CRASHED,
                sha256="",
                subject="",
                party="",
                message=f"rule {rule.code} crashed with {type(e).__name__}: {e}; "
                "its findings are missing from this run",
            )
        ]
