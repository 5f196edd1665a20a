"""What every rule sees, and the few judgements they share (DESIGN §7).

Terms used by the rules, all evaluated at `Context.at`:
- revoked: some revocation claim with `revoked_at <= at` (a revocation scheduled for later does
  not count yet). `revoked` looks at one record; `revoked_anywhere` at both parties' records;
- expired: `not_after <= at`;
- live: neither revoked (anywhere) nor expired;
- audit capable: a CA certificate that is not technically constrained (Mozilla Root Store
  Policy 5.3.1), so the audit and disclosure rules apply to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from operator import attrgetter
from types import MappingProxyType

from invsync.agent.errors import ReportError
from invsync.agent.model.facts import AuditPeriod, Disclosure
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.cross_signs import other_issuers
from invsync.agent.reconcile.side_index import by_sha256

DISCLOSURE_DAYS = timedelta(days=7)  # Mozilla Root Store Policy 5.3.2: disclose within 7 days
REVOCATION_DAYS = timedelta(days=7)  # TLS BR 4.9.1.2: revoke a subordinate CA within 7 days
AUDIT_REPORT_DAYS = timedelta(days=92)  # CCADB Policy 5.2: report within 92 days of period end
AUDIT_PERIOD = timedelta(days=365)  # audits are annual: the next period ends a year later
DATE_TOLERANCE = timedelta(days=1)  # sources round revocation times; a day apart is the same

CRL_SOURCE = "crl:"  # `Revocation.source` prefix of a claim read from a verified CRL


@dataclass(frozen=True)
class Whole:
    """What some rules judge each certificate against that depends on every certificate of
    both sides: computed from the sides of a Context, or given to one that holds only some
    certificates (`agent.reconcile.carry` reconciles those alone, with the whole pairing's).

    `disclosures_imported`: some record of either side has a CCADB disclosure (else
    `not-disclosed` cannot tell "not disclosed" from "not imported"). `audits`: the latest
    audit of each kind, each with the operators it belongs to (`not-in-audit-scope`).
    `root_attributes`: the root side comes from a snapshot (its agent attributes) or some of
    its records has an operator (`unattributed`).
    """

    disclosures_imported: bool
    audits: tuple[tuple[AuditPeriod, frozenset[str]], ...]
    root_attributes: bool


@dataclass(frozen=True)
class Context:
    """Both sides indexed by certificate SHA-256, their snapshot facts, and the clock.

    `given_whole` is None when the sides are whole (`whole` is then computed from them); a
    Context over some certificates only is given the whole pairing's `Whole`."""

    root_party: str
    sub_party: str
    root: Mapping[str, CertRecord]
    sub: Mapping[str, CertRecord]
    at: datetime
    root_side: Side = field(default_factory=lambda: Side("", ()))
    sub_side: Side = field(default_factory=lambda: Side("", ()))
    given_whole: Whole | None = None
    # The subordinate's certificates of a key the root certified that another issuer signed
    # (a cross-sign): not in `sub`, seen by `doppelganger-untracked` alone, and by
    # `doppelganger-inconsistent` as siblings only (agent.reconcile.cross_signs).
    others: Mapping[str, CertRecord] = field(default_factory=dict)

    @classmethod
    def of(cls, root: Side, sub: Side, at: datetime, whole: Whole | None = None) -> Context:
        """Each side must list a certificate at most once (snapshot acceptance guarantees it);
        a duplicate raises ReportError naming the party."""
        root_index, sub_index = _index(root), _index(sub)
        sub_index, others = other_issuers(root, root_index, sub_index)
        return cls(root.party, sub.party, root_index, sub_index, at, root, sub, whole, others)

    @cached_property
    def whole(self) -> Whole:
        """The pairing's `Whole`: the one given, or computed from these sides."""
        if self.given_whole is not None:
            return self.given_whole
        return Whole(
            disclosures_imported=bool(self.disclosures()),
            audits=_latest_audits(self),
            root_attributes=self.root_side.header is not None
            or any(map(OPERATOR, self.root.values())),
        )

    @cached_property
    def _audit_listings(self) -> Mapping[str, frozenset[AuditPeriod]]:
        return MappingProxyType(
            {
                sha: frozenset(e.audit for r in self.records_of(sha) for e in r.audit_scope)
                for sha in self.with_view("audit_scope")
            }
        )

    def audit_listings(self) -> Mapping[str, frozenset[AuditPeriod]]:
        """For each certificate with an audit scope entry at either side, the audits whose
        list names it. Computed once: `Whole` and `not-in-audit-scope` both read it."""
        return self._audit_listings

    @cached_property
    def _union(self) -> Mapping[str, CertRecord]:
        return MappingProxyType(dict(sorted({**self.sub, **self.root}.items())))

    def union(self) -> Mapping[str, CertRecord]:
        """Every certificate either side lists (the root's record when both do), by SHA-256,
        in SHA-256 order. Computed once: most rules walk it, and a side may hold 1M records."""
        return self._union

    @cached_property
    def _disclosures(self) -> Mapping[str, Disclosure]:
        found: dict[str, Disclosure] = {}
        for side in (self.sub, self.root):  # the root's replaces the subordinate's
            for record in self.having(side, "disclosure"):
                if record.disclosure is not None:  # always: `having` says so, mypy does not
                    found[record.sha256] = record.disclosure
        return MappingProxyType(dict(sorted(found.items())))

    def disclosures(self) -> Mapping[str, Disclosure]:
        """The CCADB disclosure of each certificate that has one, the root's when both sides
        hold one, in SHA-256 order. Most certificates of a large inventory have none: the rules
        about disclosures walk these instead of every certificate (issue 13)."""
        return self._disclosures

    def record(self, sha: str) -> CertRecord:
        """The certificate as `union()` holds it: the root's record when both sides list it."""
        root = self.root.get(sha)
        if root is not None:
            return root
        sub = self.sub_record(sha)
        if sub is None:
            raise KeyError(sha)
        return sub

    def with_view(self, view: str) -> list[str]:
        """The certificates, in SHA-256 order, of which either side's record has a `view`
        (a CertRecord field: "lifecycle", "audit_scope", ...) that is set: a rule about such
        records walks those only."""
        found = {r.sha256 for r in self.having(self.root, view)}
        found.update(r.sha256 for r in self.having(self.sub, view))
        return sorted(found)

    @staticmethod
    def having(side: Mapping[str, CertRecord], view: str) -> Iterator[CertRecord]:
        """The records of `side` whose `view` is set, in its order. The test runs in C (a
        filter over an attrgetter): a side may hold 1M records and few have any view."""
        return filter(attrgetter(view), side.values())

    def sub_record(self, sha: str) -> CertRecord | None:
        """The subordinate's record of a certificate, in `sub` or `others`."""
        found = self.sub.get(sha)
        return found if found is not None or not self.others else self.others.get(sha)

    def records_of(self, sha: str) -> list[CertRecord]:
        """Both parties' records of one certificate, the root's first."""
        root, sub = self.root.get(sha), self.sub_record(sha)
        if root is None:
            return [] if sub is None else [sub]
        return [root] if sub is None else [root, sub]

    def revoked(self, record: CertRecord) -> bool:
        return revocation_at(record, self.at) is not None

    def revoked_anywhere(self, sha: str) -> bool:
        # Asked for every record by most rules: no list made.
        root, sub = self.root.get(sha), self.sub_record(sha)
        return (root is not None and self.revoked(root)) or (sub is not None and self.revoked(sub))

    def expired(self, record: CertRecord) -> bool:
        return record.info.not_after <= self.at

    def live(self, record: CertRecord) -> bool:
        return not self.expired(record) and not self.revoked_anywhere(record.sha256)

    def operator_of(self, sha: str) -> str:
        """Who operates a certificate of the pairing: the root's attribution when it has one,
        else the subordinate (the pairing's scope holds only certificates issued to it)."""
        root = self.root.get(sha)
        return root.operator if root is not None and root.operator else self.sub_party

    def profiles(self) -> list[tuple[str, OperatorProfile]]:
        """(declaring party, profile) for every declared profile of either side's header."""
        return [
            (side.party, profile)
            for side in (self.root_side, self.sub_side)
            if side.header is not None
            for profile in side.header.profiles
            if profile.declared()
        ]


OPERATOR = attrgetter("operator")  # a record's operator, read in C


def _latest_audits(ctx: Context) -> tuple[tuple[AuditPeriod, frozenset[str]], ...]:
    """The latest period of each kind of audit, those without a period end left out (nothing
    can be judged against them), each with the operators of the certificates it lists."""
    listed = ctx.audit_listings()
    latest: dict[str, AuditPeriod] = {}
    for audit in sorted({a for audits in listed.values() for a in audits}, key=_audit_order):
        if audit.period_end is not None:
            latest[audit.kind] = audit
    operators = {
        audit: frozenset(ctx.operator_of(sha) for sha, audits in listed.items() if audit in audits)
        for audit in latest.values()
    }
    return tuple((latest[kind], operators[latest[kind]]) for kind in sorted(latest))


def _audit_order(audit: AuditPeriod) -> tuple[str, str, str]:
    return (audit.kind, str(audit.period_end), str(audit.period_start))


def _index(side: Side) -> Mapping[str, CertRecord]:
    index = by_sha256(side.records)
    if len(index) != len(side.records):
        seen: set[str] = set()
        for record in side.records:
            if record.sha256 in seen:
                raise ReportError(f"{side.party} lists certificate {record.sha256} more than once")
            seen.add(record.sha256)
    return index


def revocation_at(record: CertRecord, at: datetime) -> Revocation | None:
    """The record's effective revocation if it has taken effect at `at`."""
    revocation = record.revocation
    if revocation is None or revocation.revoked_at > at:
        return None
    return revocation


def revocations_differ(one: Revocation, other: Revocation) -> bool:
    """Two revocations of one certificate disagree: over a day apart, or for other reasons."""
    return abs(one.revoked_at - other.revoked_at) > DATE_TOLERANCE or one.reason != other.reason


def audit_capable(record: CertRecord) -> bool:
    """A CA certificate the audit and disclosure rules apply to (not technically constrained)."""
    return record.info.is_ca and not record.info.technically_constrained


def midnight(day: date) -> datetime:
    """A policy date (CCADB and audit lists give dates, not times) as 00:00 UTC of that day."""
    return datetime.combine(day, time.min, UTC)


def describe(record: CertRecord) -> str:
    """A certificate by subject and serial, for a message about another one. A finding's own
    certificate is not named in its message: reports show its subject, serial and SHA-256 in
    columns beside it."""
    return f"{record.info.subject} (serial {record.info.serial_hex})"


def revocation_text(revocation: Revocation) -> str:
    return f"{revocation.revoked_at:%Y-%m-%d} ({revocation.reason or 'no reason'})"


def state(ctx: Context, record: CertRecord) -> str:
    """ " (expired ...)" or " (revoked ...)" for a message, "" for a live record."""
    revocation = revocation_at(record, ctx.at)
    if ctx.expired(record):
        return f" (expired {record.info.not_after:%Y-%m-%d})"
    if revocation is not None:
        return f" (revoked {revocation_text(revocation)})"
    return ""


def shas(records: Sequence[CertRecord]) -> str:
    return ", ".join(record.sha256 for record in records)


SHORT_SHA256 = 16  # hex digits: enough to tell a finding's certificates apart, short to read


def short_shas(records: Sequence[CertRecord]) -> str:
    """Other certificates in a message, by the first 16 hex digits of their SHA-256 (the finding's
    `related` list has them in full)."""
    return ", ".join(record.sha256[:SHORT_SHA256] for record in records)
