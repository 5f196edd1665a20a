"""Parts of the HTML report about findings, as plain data for the templates: a finding as every
table shows it (with the facts of its certificate the body lists), the doppelganger groups and
the changes since a previous report (`agent.report.render.html` assembles the page).

Every string here is body text, attacker-controlled; the templates escape it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import (
    CATALOGUE,
    DOPPELGANGER_INCONSISTENT,
    DOPPELGANGER_UNTRACKED,
    Finding,
)
from invsync.agent.report.body import ReportBody
from invsync.agent.report.certificates import ListedCertificate
from invsync.agent.report.diff import diff_findings
from invsync.agent.report.render.names import readable_dn
from invsync.agent.times import rfc3339

# Hex digits of a SHA-256 shown; the page keeps the full value for hover and copy.
SHORT_SHA256 = 16

Certificates = Mapping[str, ListedCertificate]  # by SHA-256


def is_overdue(finding: Finding, as_of: datetime) -> bool:
    """Past its due date at the report's own clock (never the reader's: a page never changes)."""
    return finding.due is not None and finding.due < as_of


def party_name(name: str) -> str:
    return name or "(no party)"


@dataclass(frozen=True)
class Name:
    """A distinguished name: `readable` to show, the exact RFC 4514 text to hover."""

    rfc4514: str
    readable: str

    @classmethod
    def of(cls, rfc4514: str) -> Name:
        return cls(rfc4514, readable_dn(rfc4514))


@dataclass(frozen=True)
class Day:
    """A date to show (`day`, YYYY-MM-DD) and its exact time (`exact`, RFC 3339)."""

    day: str
    exact: str

    @classmethod
    def of(cls, moment: datetime) -> Day:
        return cls(f"{moment:%Y-%m-%d}", rfc3339(moment))


@dataclass(frozen=True)
class CertificateView:
    """The facts of a finding's certificate the body lists (`ReportBody.certificates`)."""

    issuer: Name
    serial: str
    not_before: Day
    not_after: Day

    @classmethod
    def of(cls, listed: ListedCertificate) -> CertificateView:
        return cls(
            Name.of(listed.issuer),
            listed.serial,
            Day.of(listed.not_before),
            Day.of(listed.not_after),
        )


@dataclass(frozen=True)
class FindingView:
    """What every findings table shows of a finding; `sha256` is "" when about no certificate,
    `certificate` None when the body does not list it (a body made before reports did)."""

    severity: str
    code: str
    party: str  # who must act
    sha256: str
    subject: Name
    related: tuple[str, ...]
    certificate: CertificateView | None
    action: str  # what to do, from the catalogue

    @property
    def short_sha256(self) -> str:
        return self.sha256[:SHORT_SHA256]


def by_sha256(*listed: Iterable[ListedCertificate]) -> dict[str, ListedCertificate]:
    """The certificates of bodies, the first body's facts first."""
    found: dict[str, ListedCertificate] = {}
    for certificates in listed:
        for certificate in certificates:
            found.setdefault(certificate.sha256, certificate)
    return found


def finding_view(finding: Finding, certificates: Certificates) -> FindingView:
    listed = certificates.get(finding.sha256)
    info = CATALOGUE.get(finding.code)
    return FindingView(
        severity=finding.severity.value,
        code=finding.code,
        party=party_name(finding.party),
        sha256=finding.sha256,
        subject=Name.of(finding.subject),
        related=finding.related,
        certificate=None if listed is None else CertificateView.of(listed),
        action="" if info is None else info.action,
    )


# --- doppelganger groups ----------------------------------------------------------------------


# The codes whose findings name a whole group: the certificate and its `related` members.
GROUP_CODES = (DOPPELGANGER_UNTRACKED, DOPPELGANGER_INCONSISTENT)


@dataclass(frozen=True)
class Member:
    """A certificate of a group; `severity` and `party` of its most severe doppelganger finding
    and `codes` of its doppelganger findings, if any."""

    sha256: str
    flagged: bool
    severity: str
    party: str
    codes: str
    others: str  # the codes of its other findings, "-" when none


@dataclass(frozen=True)
class Group:
    number: int
    subject: Name
    members: tuple[Member, ...]


def doppelganger_groups(findings: Iterable[Finding]) -> list[tuple[tuple[str, ...], list[Finding]]]:
    """(members, findings) per group: a doppelganger finding's certificate and its related ones
    are the whole group, so findings with the same member set are one group."""
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for finding in findings:
        if finding.code in GROUP_CODES:
            members = tuple(sorted({finding.sha256, *finding.related}))
            groups.setdefault(members, []).append(finding)
    return sorted(groups.items())


def groups(body: ReportBody) -> tuple[Group, ...]:
    """The body's doppelganger groups, numbered from 1, each titled with its subject."""
    return tuple(
        Group(number, Name.of(flagged[0].subject), _members(members, flagged, body))
        for number, (members, flagged) in enumerate(doppelganger_groups(body.findings), 1)
    )


def _members(
    members: Sequence[str], flagged: Sequence[Finding], body: ReportBody
) -> tuple[Member, ...]:
    by_member: dict[str, list[Finding]] = {}
    for finding in sorted(flagged, key=lambda f: (f.severity.rank, f.code)):
        by_member.setdefault(finding.sha256, []).append(finding)
    return tuple(_member(sha256, by_member.get(sha256, []), body) for sha256 in members)


def _member(sha256: str, found: Sequence[Finding], body: ReportBody) -> Member:
    others = sorted({f.code for f in body.findings if f.sha256 == sha256} - set(GROUP_CODES))
    listed = ", ".join(others) or "-"
    if not found:
        return Member(sha256, flagged=False, severity="", party="", codes="", others=listed)
    worst = found[0]
    codes = ", ".join(f.code for f in found)
    return Member(
        sha256, True, worst.severity.value, party_name(worst.party), codes=codes, others=listed
    )


# --- changes since the previous report --------------------------------------------------------


@dataclass(frozen=True)
class Change:
    finding: FindingView
    was: str  # the previous values of the fields that changed; "" for new and resolved ones


@dataclass(frozen=True)
class Changes:
    """New, resolved and changed findings, matched as `invsync report diff` matches them."""

    as_of: str  # of the previous report, and its snapshots' parties and versions:
    root: str
    root_version: int
    subordinate: str
    subordinate_version: int
    new: tuple[Change, ...]
    resolved: tuple[Change, ...]
    changed: tuple[Change, ...]
    unchanged: int


def changes(body: ReportBody, previous: ReportBody) -> Changes:
    diff = diff_findings(previous.findings, body.findings)
    known = by_sha256(body.certificates, previous.certificates)
    return Changes(
        as_of=rfc3339(previous.as_of),
        root=previous.root.party,
        root_version=previous.root.version,
        subordinate=previous.subordinate.party,
        subordinate_version=previous.subordinate.version,
        new=tuple(Change(finding_view(f, known), "") for f in diff.new),
        resolved=tuple(Change(finding_view(f, known), "") for f in diff.resolved),
        changed=tuple(
            Change(finding_view(new, known), _was(old, new)) for old, new in diff.changed
        ),
        unchanged=len(diff.unchanged),
    )


def resolved_in(body: ReportBody) -> tuple[Change, ...]:
    """The findings the body itself lists as resolved since the report it continues: what the
    page shows when that report is not at hand to compare with."""
    known = by_sha256(body.certificates)
    return tuple(Change(finding_view(r.finding, known), "") for r in body.resolved)


_COMPARED = ("severity", "due", "policy", "message", "related")


def _was(old: Finding, new: Finding) -> str:
    """The previous values of the fields that changed."""
    before, after = old.to_json(), new.to_json()
    changed = [name for name in _COMPARED if before[name] != after[name]]
    return "; ".join(f"{name} {_plain(before[name])}" for name in changed)


def _plain(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "none"
    return str(value)
