"""Who operates each CA certificate the root issued (issue 3, operator attribution).

In order: the issuance log's `operator` (the root's own record of whom it issued to), CCADB's
"Subordinate CA Owner" mapped to a party id, then configured rules — an explicit fingerprint,
a subject key identifier, a subject organization — and last each root pairing's
`subject_organizations`, which attribute to its peer (issue 14: one attribution for the whole
agent, which every pairing, report and `inventory list --operator` reads; before, a pairing's
organizations only widened its own scope, so one certificate could be in that pairing's scope
and `unattributed` at once). Then what the other certificates of the inventory say
(agent/inventory/issuer_attribution.py): the issuer key of a root pairing's subordinate, and a
CT pre-certificate's final certificate. A certificate none of them attributes keeps an empty
`attribution`: it is unattributed, kept and reported, never dropped. When a later source names
another operator than the one that decided, the record keeps both in its `attribution`, and the
report has an `attribution-conflict` finding naming the two.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from invsync.agent.inventory.issuer_attribution import (
    Vote,
    final_certificate_votes,
    issuer_key_votes,
)
from invsync.agent.model.record import CertRecord, sha256_hex
from invsync.agent.sources.ccadb import normalize_owner

ISSUANCE_LOG = "issuance-log"
CCADB = "ccadb"


@dataclass(frozen=True)
class AttributionRule:
    """Attribute to `operator` the certificates matching one of the given selectors."""

    operator: str
    sha256: frozenset[str] = frozenset()  # uppercase hex fingerprints
    subject_key_ids: frozenset[str] = frozenset()  # uppercase hex
    subject_organizations: frozenset[str] = frozenset()
    # What a match is recorded as, when not the selector's kind: the configuration key of a
    # pairing's organizations ("pairings.secom-nii.subject_organizations").
    label: str = ""

    def match(self, record: CertRecord) -> str | None:
        """The kind of selector that matched ("rule:fingerprint"...), or None."""
        info = record.info
        if info.sha256 in self.sha256:
            return self.label or "rule:fingerprint"
        if info.ski is not None and info.ski in self.subject_key_ids:
            return self.label or "rule:subject-key-id"
        # Without a set made per record: attribution asks this of every record, every cycle.
        if not self.subject_organizations.isdisjoint(info.subject_organizations):
            return self.label or "rule:subject-organization"
        return None


@dataclass(frozen=True)
class Attribution:
    rules: tuple[AttributionRule, ...] = ()
    # CCADB "Subordinate CA Owner" (as agent.sources.ccadb.normalize_owner spells it) -> party id
    ccadb_owners: Mapping[str, str] = field(default_factory=dict)
    # The peers of the agent's root pairings: a certificate their CA keys signed is theirs.
    subordinates: frozenset[str] = frozenset()


def with_pairings(
    attribution: Attribution, pairings: Sequence[tuple[str, str, Iterable[str]]]
) -> Attribution:
    """`attribution` with a rule more for each (pairing name, peer, subject organizations) of
    the agent's root pairings, after its own rules: a pairing's organizations name who holds
    the keys of the certificates it issued to that peer, for every pairing at once. Each peer
    is a subordinate too, whose CA keys attribute what they signed."""
    more = tuple(
        AttributionRule(
            operator=peer,
            subject_organizations=frozenset(organizations),
            label=f"pairings.{name}.subject_organizations",
        )
        for name, peer, organizations in pairings
        if organizations
    )
    peers = frozenset(peer for _, peer, _ in pairings)
    return replace(
        attribution, rules=attribution.rules + more, subordinates=attribution.subordinates | peers
    )


# Where a record's `attribution` names a source that disagreed with the one that decided:
# "issuance-log; conflicting: pairings.secom-nii.subject_organizations says nii"
# (`attribution-conflict`, agent.reconcile.rules.attribution_conflict).
CONFLICT = "; conflicting: "
_SAYS = " says "


def attribute(
    records: Iterable[CertRecord], attribution: Attribution, root_spkis: Iterable[bytes] = ()
) -> list[CertRecord]:
    """Each record with its operator; `root_spkis` are the agent's own root keys (DER), which
    no certificate a subordinate signed makes a subordinate's (a cross-certificate to them)."""
    attributed = [_attribute(record, attribution) for record in records]
    roots = frozenset(map(sha256_hex, root_spkis))
    # Asked of the inventory as now attributed: an issuer's operator may come from any source.
    for vote in issuer_key_votes(attributed, attribution.subordinates, roots):
        attributed[vote.index] = _voted(attributed[vote.index], vote)
    for vote in final_certificate_votes(attributed):
        attributed[vote.index] = _voted(attributed[vote.index], vote)
    return attributed


def _voted(record: CertRecord, vote: Vote) -> CertRecord:
    """`record` decided by `vote` when nothing decided it, else with `vote` as its conflict
    when it names another operator and no earlier source already disagreed."""
    if not record.operator:
        return record.with_attribution(vote.operator, vote.how)
    if vote.operator == record.operator or CONFLICT in record.attribution:
        return record
    conflict = f"{record.attribution}{CONFLICT}{vote.how}{_SAYS}{vote.operator}"
    return record.with_attribution(record.operator, conflict)


def _attribute(record: CertRecord, attribution: Attribution) -> CertRecord:
    """The first source's operator, in the order of the module docstring; and the first later
    source naming another operator, if any, kept in `attribution` after CONFLICT."""
    votes = _votes(record, attribution)
    first = next(votes, None)
    if first is None:
        return record.with_attribution(record.operator, "")
    operator, kind = first
    other = next((vote for vote in votes if vote[0] != operator), None)
    if other is not None:
        kind = f"{kind}{CONFLICT}{other[1]}{_SAYS}{other[0]}"
    return record.with_attribution(operator, kind)


def _votes(record: CertRecord, attribution: Attribution) -> Iterator[tuple[str, str]]:
    """(operator, how) from each source that attributes the record, first to last."""
    if record.operator:
        # An attribution made before (a stored record) is read again without its conflict.
        yield record.operator, (record.attribution or ISSUANCE_LOG).split(CONFLICT)[0]
    owner = record.disclosure.subordinate_ca_owner if record.disclosure else ""
    party = attribution.ccadb_owners.get(normalize_owner(owner)) if owner else None
    if party:
        yield party, CCADB
    for rule in attribution.rules:
        kind = rule.match(record)
        if kind:
            yield rule.operator, kind


def conflict_of(attribution: str) -> tuple[str, str, str] | None:
    """(how the operator was decided, the source that disagreed, the operator it names) of a
    record's `attribution`, or None when no source disagreed."""
    decided, found, conflict = attribution.partition(CONFLICT)
    if not found:
        return None
    source, _, operator = conflict.rpartition(_SAYS)
    return decided, source, operator


def subject_organizations(record: CertRecord) -> frozenset[str]:
    return frozenset(record.info.subject_organizations)
