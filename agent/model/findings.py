"""Findings: what the reconciler reports, as data (DESIGN §7).

A finding has a stable code from `CATALOGUE`, a severity, the certificate it is about, the party
that must act, the policy it rests on and a due date where that policy sets a clock. Adding a code
is one `CodeInfo` entry here plus one rule module in `agent.reconcile.rules`; a test checks that the
two agree, and `invsync rules` lists this catalogue. Some codes come from no rule
(`NOT_FROM_RULES`): `rule-crashed`, the runner's own; `peer-rollback`, which an agent's trusted
state (`agent.exchange.trusted`) makes when the exchange serves it a peer snapshot that
contradicts one it already verified; and `log-inconsistent`, which an agent's log watch
(`agent.daemon.log_watch`) makes when the exchange's transparency log does not hold together. No
reconciliation of two snapshots can see those. `log-split-view` comes from both: the log watch
(the peer's checkpoint, verified, is not of our log) and a rule (the two headers' checkpoints
claim one size with two roots).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from invsync.agent.errors import ReportError
from invsync.agent.times import rfc3339


class Severity(StrEnum):
    """How urgent a finding is; `rank` orders them, most urgent first."""

    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"

    @property
    def rank(self) -> int:
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER = (Severity.ERROR, Severity.WARNING, Severity.NOTICE)

MISSING_AT_SUBORDINATE = "missing-at-subordinate"
MISSING_AT_ROOT = "missing-at-root"
STATUS_MISMATCH = "status-mismatch"
DOPPELGANGER_UNTRACKED = "doppelganger-untracked"
DOPPELGANGER_INCONSISTENT = "doppelganger-inconsistent"
NOT_IN_AUDIT_SCOPE = "not-in-audit-scope"
AUDIT_OVERDUE = "audit-overdue"
UNUSED_NOT_REVOKED = "unused-not-revoked"
NOT_DISCLOSED = "not-disclosed"
PROFILE_DEVIATION = "profile-deviation"
UNATTRIBUTED = "unattributed"
ATTRIBUTION_CONFLICT = "attribution-conflict"
STALE_PEER = "stale-peer"
DISAPPEARED = "disappeared"
PEER_ROLLBACK = "peer-rollback"
LOG_INCONSISTENT = "log-inconsistent"
LOG_SPLIT_VIEW = "log-split-view"
RULE_CRASHED = "rule-crashed"

# The policies findings rest on, spelled once. "" is a finding no root program policy sets: it
# rests on the pairing's own agreement (both parties keep the same, current, complete list).
MOZILLA_DISCLOSURE = "Mozilla Root Store Policy 5.3.2"  # disclose within 7 days
MOZILLA_AUDIT_SCOPE = "Mozilla Root Store Policy 3.1.3"  # every capable CA certificate audited
MOZILLA_TECHNICALLY_CONSTRAINED = "Mozilla Root Store Policy 5.3.1"  # exempt only if constrained
BR_REVOCATION = "TLS BR 4.9.1.2"  # revoke a subordinate CA certificate within 7 days
BR_ISSUANCE_RECORDS = "TLS BR 5.4.1"  # the issuer records every certificate it signs
CCADB_AUDIT_DELIVERY = "CCADB Policy 5.2"  # audit report within 92 days of the period's end
# Nobody, the exchange operator included, rewrites what was exchanged (docs/rules.md).
EXCHANGE_HISTORY = "invsync exchange history (DESIGN 6a)"
PAIRING_AGREEMENT = ""


@dataclass(frozen=True)
class CodeInfo:
    """One catalogue entry: a code's default severity, its policy and what it means."""

    code: str
    severity: Severity
    policy: str
    description: str
    # What the party that must act does, in plain words, for the reports' "what to do" column.
    action: str


def _catalogue(*entries: CodeInfo) -> Mapping[str, CodeInfo]:
    return MappingProxyType({entry.code: entry for entry in entries})


# In the order `invsync rules` lists them: the two-party comparison first, then the public view
# and the audit, then the operators' declarations, then the exchange itself.
CATALOGUE: Mapping[str, CodeInfo] = _catalogue(
    CodeInfo(
        MISSING_AT_SUBORDINATE,
        Severity.ERROR,
        MOZILLA_DISCLOSURE,
        "The root issued a CA certificate to the subordinate that the subordinate does not list.",
        "Subordinate: add the certificate to your inventory and audit scope, or ask the root to "
        "revoke it if you never used it.",
    ),
    CodeInfo(
        MISSING_AT_ROOT,
        Severity.ERROR,
        BR_ISSUANCE_RECORDS,
        "The subordinate lists a CA certificate under the root's key that the root does not list.",
        "Root: find the certificate in your issuance records and list it, or report an issuance "
        "you cannot account for as an incident.",
    ),
    CodeInfo(
        STATUS_MISMATCH,
        Severity.ERROR,
        BR_REVOCATION,
        "The parties, a CRL or CCADB disagree on whether, when or why a certificate was revoked.",
        "Agree on the revocation: revoke where it should be, and correct the CRL, CCADB record or "
        "inventory that is wrong.",
    ),
    CodeInfo(
        DOPPELGANGER_UNTRACKED,
        Severity.WARNING,
        PAIRING_AGREEMENT,
        "A certificate shares subject and key with others that are listed or revoked differently.",
        "List or revoke every certificate of the group alike: one key and subject are one CA, "
        "whichever certificate is used.",
    ),
    CodeInfo(
        DOPPELGANGER_INCONSISTENT,
        Severity.WARNING,
        MOZILLA_AUDIT_SCOPE,
        "Certificates sharing subject and key differ in audit scope, technical constraint or "
        "revocation.",
        "Subordinate: audit, constrain and revoke every certificate of the group alike, or have "
        "the odd one revoked.",
    ),
    CodeInfo(
        NOT_IN_AUDIT_SCOPE,
        Severity.ERROR,
        MOZILLA_AUDIT_SCOPE,
        "A live, not technically constrained CA certificate issued before an audit period's end "
        "is absent from that audit's list.",
        "Add the certificate to the next audit's scope, or revoke it; tell the root program if an "
        "audit period missed it.",
    ),
    CodeInfo(
        AUDIT_OVERDUE,
        Severity.ERROR,
        CCADB_AUDIT_DELIVERY,
        "CCADB holds no audit for a live CA certificate, or its next audit report is overdue.",
        "Deliver the audit report to CCADB, or revoke the certificate if it is no longer audited.",
    ),
    CodeInfo(
        UNUSED_NOT_REVOKED,
        Severity.ERROR,
        BR_REVOCATION,
        "A CA certificate marked unused or decommissioned is still valid and not revoked.",
        "Revoke the unused certificate and disclose the revocation in CCADB.",
    ),
    CodeInfo(
        NOT_DISCLOSED,
        Severity.ERROR,
        MOZILLA_DISCLOSURE,
        "A CA certificate has no CCADB record seven days after its notBefore.",
        "Disclose the certificate in CCADB now, and file an incident for the late disclosure.",
    ),
    CodeInfo(
        PROFILE_DEVIATION,
        Severity.WARNING,
        PAIRING_AGREEMENT,
        "A live CA certificate's serial length, EKUs or validity differ from its operator's "
        "declared profile.",
        "Check the certificate against the declared profile: correct the profile, or replace the "
        "certificate.",
    ),
    CodeInfo(
        UNATTRIBUTED,
        Severity.WARNING,
        PAIRING_AGREEMENT,
        "The root lists a CA certificate under its key without knowing who operates it.",
        "Root: name the operator of this certificate in your sources (issuance log or CCADB), so "
        "it is reconciled with them.",
    ),
    CodeInfo(
        ATTRIBUTION_CONFLICT,
        Severity.WARNING,
        PAIRING_AGREEMENT,
        "The root's own sources name two operators for one CA certificate it issued.",
        "Root: correct the source that names the wrong operator, so the certificate has one.",
    ),
    CodeInfo(
        STALE_PEER,
        Severity.WARNING,
        PAIRING_AGREEMENT,
        "A party's snapshot has expired or is older than its maximum age.",
        "The named party: get its agent running and pushing fresh snapshots again.",
    ),
    CodeInfo(
        DISAPPEARED,
        Severity.ERROR,
        PAIRING_AGREEMENT,
        "A certificate left a party's snapshot without being revoked or expiring.",
        "Put the certificate back in the inventory, or revoke it if it was dropped on purpose.",
    ),
    CodeInfo(
        LOG_SPLIT_VIEW,
        Severity.ERROR,
        EXCHANGE_HISTORY,
        "The peer's snapshot carries a log checkpoint that is not consistent with the agent's "
        "own: the exchange showed the two parties different logs.",
        "Stop trusting the exchange, keep the evidence bundle, and compare checkpoints with the "
        "peer out of band.",
    ),
    CodeInfo(
        PEER_ROLLBACK,
        Severity.ERROR,
        EXCHANGE_HISTORY,
        "The exchange served a peer snapshot older than one the agent verified, or another one "
        "with the same version.",
        "Keep the evidence bundle and ask the exchange operator and the peer why an older "
        "snapshot was served.",
    ),
    CodeInfo(
        LOG_INCONSISTENT,
        Severity.ERROR,
        EXCHANGE_HISTORY,
        "The exchange's log is not an append-only extension of the last checkpoint the agent "
        "verified, or does not hold the agent's own entry as receipted.",
        "Keep the evidence bundle and ask the exchange operator to explain the log; do not accept "
        "its reports meanwhile.",
    ),
    CodeInfo(
        RULE_CRASHED,
        Severity.ERROR,
        PAIRING_AGREEMENT,
        "A reconciliation rule raised an exception; its findings are missing from this run.",
        "Report the crash to the invsync maintainers with the log; the rule's findings are "
        "missing until it is fixed.",
    ),
)

# The codes no rule of agent.reconcile.rules makes: the agent's trusted state's and log watch's,
# and the runner's.
NOT_FROM_RULES = (PEER_ROLLBACK, LOG_INCONSISTENT, RULE_CRASHED)

_SHA256 = re.compile(r"[0-9A-F]{64}")

# The keys of `Finding.to_json`, fixed: the report schema depends on them.
FINDING_FIELDS = (
    "code",
    "severity",
    "sha256",
    "subject",
    "party",
    "policy",
    "due",
    "message",
    "related",
    "first_seen",
    "acknowledgement",
)
ACKNOWLEDGEMENT_FIELDS = ("party", "reason", "acknowledged_at", "expires_at")


@dataclass(frozen=True)
class AckMark:
    """The acknowledgement in force on a finding: which party gave it, why, and until when."""

    party: str
    reason: str
    acknowledged_at: datetime
    expires_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "party": self.party,
            "reason": self.reason,
            "acknowledged_at": rfc3339(self.acknowledged_at),
            "expires_at": rfc3339(self.expires_at),
        }

    @classmethod
    def from_json(cls, obj: object, where: str) -> AckMark:
        if not isinstance(obj, dict) or set(obj) != set(ACKNOWLEDGEMENT_FIELDS):
            raise ReportError(
                f"{where}: field 'acknowledgement' must be null or an object with keys "
                + ", ".join(ACKNOWLEDGEMENT_FIELDS)
            )
        text = {key: _text(obj, key, f"{where}: acknowledgement") for key in obj}
        return cls(
            party=text["party"],
            reason=text["reason"],
            acknowledged_at=parse_rfc3339(text["acknowledged_at"], where),
            expires_at=parse_rfc3339(text["expires_at"], where),
        )


@dataclass(frozen=True)
class Finding:
    """One disagreement, about one certificate (or none: `sha256` is "" for `rule-crashed`).

    `party` is the id of the party that must act ("" when no party can), `related` the sorted
    SHA-256s of other certificates involved, `due` the policy deadline or None.
    `first_seen` is the `as_of` of the first report of the pairing that listed this finding
    without a gap (set by `agent.report.body.build_report_body`; None before that);
    `acknowledgement` the acknowledgement in force of the party that must act, or None (open).
    """

    code: str
    severity: Severity
    sha256: str
    subject: str
    party: str
    policy: str
    due: datetime | None
    message: str
    related: tuple[str, ...] = ()
    first_seen: datetime | None = None
    acknowledgement: AckMark | None = None

    def __post_init__(self) -> None:
        # A rule that builds a malformed finding is a bug: it surfaces as `rule-crashed`.
        if self.code not in CATALOGUE:
            raise ValueError(f"unknown finding code {self.code!r}")
        for digest in (self.sha256, *self.related):
            if digest and not _SHA256.fullmatch(digest):
                raise ValueError(f"not an uppercase hex SHA-256: {digest!r}")
        for moment in (self.due, self.first_seen):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("due and first_seen must be timezone-aware")
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "related", tuple(sorted(self.related)))

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        """Total order of findings: (code, sha256) first, then party and message."""
        return (self.code, self.sha256, self.party, self.message)

    def to_json(self) -> dict[str, object]:
        """The finding as a JSON object with exactly the keys of `FINDING_FIELDS`."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "sha256": self.sha256,
            "subject": self.subject,
            "party": self.party,
            "policy": self.policy,
            "due": None if self.due is None else rfc3339(self.due),
            "message": self.message,
            "related": list(self.related),
            "first_seen": None if self.first_seen is None else rfc3339(self.first_seen),
            "acknowledgement": None
            if self.acknowledgement is None
            else self.acknowledgement.to_json(),
        }

    @property
    def acknowledged(self) -> bool:
        return self.acknowledgement is not None

    @classmethod
    def from_json(cls, obj: object, where: str = "finding") -> Finding:
        """Read a finding written by `to_json`; ReportError names `where` and the bad field."""
        if not isinstance(obj, dict) or set(obj) != set(FINDING_FIELDS):
            raise ReportError(f"{where}: expected an object with keys {', '.join(FINDING_FIELDS)}")
        text = {key: _text(obj, key, where) for key in FINDING_FIELDS if key not in _NOT_TEXT}
        due = None if obj["due"] is None else parse_rfc3339(_text(obj, "due", where), where)
        related = obj["related"]
        if not isinstance(related, list) or not all(isinstance(r, str) for r in related):
            raise ReportError(f"{where}: field 'related' must be a list of strings")
        first_seen = None
        if obj["first_seen"] is not None:
            first_seen = parse_rfc3339(_text(obj, "first_seen", where), where)
        ack = obj["acknowledgement"]
        mark = None if ack is None else AckMark.from_json(ack, where)
        try:
            return cls(
                **text,  # type: ignore[arg-type]
                due=due,
                related=tuple(related),
                first_seen=first_seen,
                acknowledgement=mark,
            )
        except ValueError as e:
            raise ReportError(f"{where}: {e}") from e


_NOT_TEXT = ("due", "related", "first_seen", "acknowledgement")


def _text(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ReportError(f"{where}: field {key!r} must be a string")
    return value


def parse_rfc3339(text: str, where: str) -> datetime:
    """The inverse of `rfc3339`; ReportError names `where` for anything else."""
    try:
        if not text.endswith("Z"):
            raise ValueError("no Z")
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as e:
        raise ReportError(f"{where}: {text!r} is not an RFC 3339 UTC time ending in Z") from e


def make_finding(
    code: str,
    *,
    sha256: str,
    subject: str,
    party: str,
    message: str,
    due: datetime | None = None,
    related: tuple[str, ...] = (),
    severity: Severity | None = None,
    policy: str | None = None,
) -> Finding:
    """A finding with the catalogue's policy and default severity, unless one is given (a rule
    whose findings rest on more than one policy, such as a revocation missing from CCADB)."""
    info = CATALOGUE.get(code)
    if info is None:
        raise ValueError(f"unknown finding code {code!r}")
    return Finding(
        code=code,
        severity=info.severity if severity is None else severity,
        sha256=sha256,
        subject=subject,
        party=party,
        policy=info.policy if policy is None else policy,
        due=due,
        message=message,
        related=related,
    )


def count_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    """{"error": n, "warning": n, "notice": n}, every severity present even when zero."""
    counts = {severity.value: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity.value] += 1
    return counts
