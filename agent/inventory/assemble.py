"""One inventory out of a collection: records merged, then the facts about them attached.

CCADB disclosures and audit scope entries attach by SHA-256. A CRL entry attaches to the
certificates with its serial that its (verified) issuer key signed, checked by signature, not
by name. Each revocation claim is kept as evidence; the party's own statement stays the
effective revocation, and a CRL's fills it when the party said nothing. Facts about
certificates the inventory does not hold are returned, not dropped, so they can be reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_public_key

from invsync.agent.inventory.attribution import Attribution, attribute
from invsync.agent.model.bundle import Facts
from invsync.agent.model.facts import AuditScopeEntry, CrlRevocation, Disclosure, Skipped
from invsync.agent.model.merge import merge
from invsync.agent.model.record import CertInfo, CertRecord, Revocation
from invsync.agent.model.signatures import signed_by

T = TypeVar("T")


@dataclass(frozen=True)
class Assembled:
    records: list[CertRecord]
    unmatched_disclosures: tuple[Disclosure, ...] = ()
    unmatched_audit_scope: tuple[AuditScopeEntry, ...] = ()
    unmatched_crl_entries: tuple[CrlRevocation, ...] = ()
    skipped: tuple[Skipped, ...] = ()


def assemble(
    facts: Facts,
    *,
    issuers: Sequence[CertInfo] = (),
    attribution: Attribution | None = None,
    root_spkis: Sequence[bytes] = (),
) -> Assembled:
    """`issuers`: CA certificates known beyond this collection (for CRL issuer keys);
    `root_spkis`: the agent's own root keys (its pairings' issuer certificates), never a
    subordinate's by the issuer-key rule."""
    records = merge(facts.records)
    disclosures = {d.sha256: d for d in facts.disclosures}
    scope = _by_sha(facts.audit_scope)
    held = {r.info.sha256 for r in records}
    records = [
        _with_public_view(r, disclosures.get(r.info.sha256), scope.get(r.info.sha256, ()))
        for r in records
    ]
    records, unmatched_crl = _apply_crls(records, facts.crl_revocations, issuers)
    if attribution is not None:
        records = attribute(records, attribution, root_spkis)
    return Assembled(
        records=records,
        unmatched_disclosures=tuple(d for d in facts.disclosures if d.sha256 not in held),
        unmatched_audit_scope=tuple(a for a in facts.audit_scope if a.sha256 not in held),
        unmatched_crl_entries=unmatched_crl,
        skipped=facts.skipped,
    )


def _by_sha(entries: Iterable[AuditScopeEntry]) -> dict[str, tuple[AuditScopeEntry, ...]]:
    grouped: dict[str, list[AuditScopeEntry]] = defaultdict(list)
    for entry in entries:
        grouped[entry.sha256].append(entry)
    return {sha: tuple(found) for sha, found in grouped.items()}


def _with_public_view(
    record: CertRecord, disclosure: Disclosure | None, scope: tuple[AuditScopeEntry, ...]
) -> CertRecord:
    if disclosure is None and not scope and record.revocation is None:
        return record  # nothing to attach: what `with_view` finds too, after comparing each
    evidence = (record.revocation,) if record.revocation else ()
    return record.with_view(
        disclosure=disclosure or record.disclosure,
        audit_scope=_union(record.audit_scope, scope),
        revocation_evidence=record.revocation_evidence or evidence,
    )


def _union(known: tuple[T, ...], new: Iterable[T]) -> tuple[T, ...]:
    """`known` then what `new` adds: importing the same list twice must not list it twice."""
    return known + tuple(item for item in dict.fromkeys(new) if item not in known)


def _apply_crls(
    records: list[CertRecord], entries: Sequence[CrlRevocation], issuers: Sequence[CertInfo]
) -> tuple[list[CertRecord], tuple[CrlRevocation, ...]]:
    if not entries:
        return records, ()
    keys = {i.spki_sha256: i.spki_der for i in [*issuers, *(r.info for r in records)]}
    by_serial: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        by_serial[record.info.serial_hex].append(index)
    evidence: dict[int, list[Revocation]] = defaultdict(list)
    unmatched = []
    for entry in entries:
        hits = [i for i in by_serial.get(entry.serial_hex, ()) if _issued(records[i], entry, keys)]
        for index in hits:
            evidence[index].append(_as_revocation(entry))
        if not hits:
            unmatched.append(entry)
    updated = [_revoked(r, evidence.get(i, [])) for i, r in enumerate(records)]
    return updated, tuple(unmatched)


def _issued(record: CertRecord, entry: CrlRevocation, keys: dict[str, bytes]) -> bool:
    spki = keys.get(entry.issuer_spki_sha256)
    if spki is None:
        return False
    cert = x509.load_der_x509_certificate(record.info.der)
    return signed_by(cert, load_der_public_key(spki))


def _as_revocation(entry: CrlRevocation) -> Revocation:
    return Revocation(entry.revoked_at, entry.reason, entry.source, entry.crl_signature_hash)


def _revoked(record: CertRecord, crl: list[Revocation]) -> CertRecord:
    if not crl:
        return record
    effective = record.revocation or min(crl, key=lambda r: r.revoked_at)
    evidence = _union(record.revocation_evidence, crl)
    return record.with_view(revocation=effective, revocation_evidence=evidence)
