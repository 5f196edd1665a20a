"""An incident's failures, as a CA files them: findings grouped by what went wrong, each group
one plain sentence with the certificates, the policy it rests on and what to do.

Mozilla bug 1695993 (SECOM/JPRS) had three failures on two certificates: JPRS did not track
them (`missing-at-subordinate`), its audit left them out (`not-in-audit-scope`), and nobody
revoked them for months. The third is no rule's finding of its own in a report as of before the
revocation: a certificate the subordinate does not hold, live (the rule's error severity says
neither revoked nor expired), has been left unrevoked since its notBefore, so it is derived
here from `missing-at-subordinate` (or taken from `unused-not-revoked` where a rule found it).
Every other selected finding is listed as a contributing finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import (
    CATALOGUE,
    MISSING_AT_SUBORDINATE,
    NOT_IN_AUDIT_SCOPE,
    UNUSED_NOT_REVOKED,
    Finding,
    Severity,
)
from invsync.agent.report.certificates import ListedCertificate

# The failures in the order a reader follows the SECOM case; other error codes come after.
UNTRACKED = "untracked at the subordinate"
OUTSIDE_AUDIT = "outside the audit"
UNREVOKED = "left unrevoked"
_TITLES = {MISSING_AT_SUBORDINATE: UNTRACKED, NOT_IN_AUDIT_SCOPE: OUTSIDE_AUDIT}


@dataclass(frozen=True)
class Failure:
    """One failure of the incident: its title, the findings it rests on (none of its own code
    for a derived one), the policy and the action the catalogue names, and per certificate how
    long it lasted (for `left unrevoked`)."""

    title: str
    code: str
    findings: tuple[Finding, ...]
    policy: str
    action: str
    since: Mapping[str, datetime]  # SHA-256 -> when the failure started, if known

    @property
    def certificates(self) -> tuple[str, ...]:
        return tuple(sorted({f.sha256 for f in self.findings if f.sha256}))


def failures(findings: Sequence[Finding], listed: Mapping[str, ListedCertificate]) -> list[Failure]:
    """The failures of the selected findings: every error-severity code as a group, and
    `left unrevoked` for the live certificates the subordinate does not hold."""
    errors = [f for f in findings if f.severity is Severity.ERROR]
    codes = sorted({f.code for f in errors}, key=_order)
    found = [_group(code, [f for f in errors if f.code == code]) for code in codes]
    found = [f for f in found if f.code != UNUSED_NOT_REVOKED]
    unrevoked = _unrevoked(errors, listed)
    return found + ([unrevoked] if unrevoked else [])


def contributing(findings: Sequence[Finding]) -> list[Finding]:
    """The selected findings that are no failure: warnings and notices."""
    return [f for f in findings if f.severity is not Severity.ERROR]


def _order(code: str) -> tuple[int, str]:
    known = list(_TITLES)
    return (known.index(code) if code in known else len(known), code)


def _group(code: str, findings: list[Finding]) -> Failure:
    info = CATALOGUE[code]
    title = _TITLES.get(code, code)
    policy = findings[0].policy if len({f.policy for f in findings}) == 1 else info.policy
    return Failure(title, code, tuple(findings), policy, info.action, {})


def _unrevoked(errors: list[Finding], listed: Mapping[str, ListedCertificate]) -> Failure | None:
    """Live certificates the subordinate does not hold (or a rule found unused) and nobody
    revoked: unrevoked since their notBefore, as far as the report knows."""
    basis = [f for f in errors if f.code in (MISSING_AT_SUBORDINATE, UNUSED_NOT_REVOKED)]
    if not basis:
        return None
    by_sha: dict[str, Finding] = {}
    for finding in basis:
        by_sha.setdefault(finding.sha256, finding)
    since = {sha: listed[sha].not_before for sha in by_sha if sha in listed}
    info = CATALOGUE[UNUSED_NOT_REVOKED]
    return Failure(
        UNREVOKED, UNUSED_NOT_REVOKED, tuple(by_sha.values()), info.policy, _UNREVOKED_ACTION, since
    )


# A certificate the subordinate does not hold may be unused or merely unlisted: the action says
# both, where the catalogue's `unused-not-revoked` one assumes the first.
_UNREVOKED_ACTION = (
    "Revoke every certificate the subordinate does not use, within the Baseline Requirements' "
    "seven days, and disclose the revocation in CCADB; list and audit the ones it uses."
)
