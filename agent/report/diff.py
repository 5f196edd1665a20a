"""What changed between two reports of a pairing: findings that appeared, were resolved, or
changed (severity, party, due date, message) under the same identity.

A finding's identity across reports is its code, certificate and the party that must act:
the same problem on the same certificate is the same finding, whatever its wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from invsync.agent.model.findings import Finding

FindingKey = tuple[str, str, str]


def finding_key(finding: Finding) -> FindingKey:
    return (finding.code, finding.sha256, finding.party)


@dataclass(frozen=True)
class ReportDiff:
    new: tuple[Finding, ...]
    resolved: tuple[Finding, ...]
    changed: tuple[tuple[Finding, Finding], ...]  # (old, new)
    unchanged: tuple[Finding, ...]

    def is_empty(self) -> bool:
        return not (self.new or self.resolved or self.changed)


def diff_findings(old: Iterable[Finding], new: Iterable[Finding]) -> ReportDiff:
    before = {finding_key(f): f for f in old}
    after = {finding_key(f): f for f in new}
    both = [k for k in after if k in before]
    return ReportDiff(
        new=tuple(after[k] for k in sorted(after.keys() - before.keys())),
        resolved=tuple(before[k] for k in sorted(before.keys() - after.keys())),
        changed=tuple((before[k], after[k]) for k in sorted(both) if _differ(before[k], after[k])),
        unchanged=tuple(after[k] for k in sorted(both) if not _differ(before[k], after[k])),
    )


def _differ(old: Finding, new: Finding) -> bool:
    """Whether a finding changed; its first_seen is history, not a change."""
    return replace(old, first_seen=None) != replace(new, first_seen=None)


def diff_text(diff: ReportDiff) -> str:
    """One line per change, for a terminal: `+` new, `-` resolved, `~` changed."""
    lines = [f"+ {_line(f)}" for f in diff.new]
    lines += [f"- {_line(f)}" for f in diff.resolved]
    lines += [f"~ {_line(new)}  (was: {_changes(old, new)})" for old, new in diff.changed]
    if not lines:
        return "no changes\n"
    summary = f"{len(diff.new)} new, {len(diff.resolved)} resolved, {len(diff.changed)} changed"
    return "\n".join([*lines, summary]) + "\n"


def _line(finding: Finding) -> str:
    return f"{finding.severity.upper():<8}{finding.code:<24}{finding.sha256 or '-'}"


def _changes(old: Finding, new: Finding) -> str:
    fields = ("severity", "due", "policy", "message", "related", "acknowledgement")
    return ", ".join(
        f"{name} {getattr(old, name)}"
        for name in fields
        if getattr(old, name) != getattr(new, name)
    )
