"""Which of a party's records belong to a pairing (DESIGN §2, §7).

A pairing's scope is defined by the root's CA keys: a certificate is under the root when its
signature verifies with one of those keys. Names are never trusted for this (anyone can write
"SECOM" in an issuer field, and an issuer name does not say which of a root's keys signed).
Self-signed certificates are the roots themselves, never something issued to a subordinate.

On the root's side, the pairing's subordinate is picked by operator attribution; a record with no
operator falls back to the subject's organization, as CCADB's "Subordinate CA Owner" does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from invsync.agent.inventory.attribution import subject_organizations
from invsync.agent.model.record import CertRecord, sha256_hex
from invsync.agent.model.signatures import signed_by

# What `cryptography` gives as `signature_algorithm_parameters` of a certificate or a CRL.


def root_scope(
    records: Iterable[CertRecord],
    *,
    issuer_spkis: Sequence[bytes],
    subordinate: str,
    subject_organizations: Sequence[str],
) -> list[CertRecord]:
    """The root's records issued to `subordinate`: CA certificates signed by one of the root's
    keys (`issuer_spkis`, SubjectPublicKeyInfo DER), not self-signed, whose operator is
    `subordinate` or, when the operator is unknown, whose subject O is in
    `subject_organizations`. Input order is kept."""
    keys = _load_keys(issuer_spkis)
    organizations = frozenset(subject_organizations)
    return [
        record
        for record in records
        if _issued_under(record, keys) and _attributed(record, subordinate, organizations)
    ]


def subordinate_scope(
    records: Iterable[CertRecord], *, issuer_spkis: Sequence[bytes]
) -> list[CertRecord]:
    """The subordinate's CA certificates signed by one of the root's keys (not self-signed),
    and its other CA certificates with the subject and key of one of those: a key another root
    certified too (a cross-sign). Whoever holds the key can use every such certificate, so the
    root's pairing sees them for `doppelganger-untracked` (the reconciler tells them apart by
    the signature: agent.reconcile.cross_signs). Input order is kept."""
    keys = _load_keys(issuer_spkis)
    listed = list(records)
    issued = [_issued_under(record, keys) for record in listed]
    pairs = list(zip(listed, issued, strict=True))
    outside = {r.info.doppelganger_key for r, under in pairs if not under}
    # Most certificates of a subordinate are under the root: only the others' groups are asked.
    shared = {
        r.info.doppelganger_key
        for r, under in pairs
        if under and r.info.doppelganger_key in outside
    }
    return [
        record
        for record, under in pairs
        if under or (record.info.doppelganger_key in shared and _cross_signed(record))
    ]


def _cross_signed(record: CertRecord) -> bool:
    """A CA certificate of a key another certificate certifies, not its self-signed one."""
    return record.info.is_ca and not (record.info.self_issued and _self_signed(record))


def issued_ca_certificates(records: Iterable[CertRecord]) -> list[CertRecord]:
    """The scope of an offline comparison, where the sources themselves define the pairing:
    every CA certificate that is not self-signed (a root is nobody's issued certificate)."""
    return [record for record in records if record.info.is_ca and not _self_signed(record)]


def _self_signed(record: CertRecord, cert: x509.Certificate | None = None) -> bool:
    # Only a self-issued certificate (subject == issuer) can be self-signed: the name check is
    # free, so the signature is checked only for those.
    if not record.info.self_issued:
        return False
    cert = cert or x509.load_der_x509_certificate(record.info.der)
    return signed_by(cert, cert.public_key())


Key = tuple[str, PublicKeyTypes]  # the SPKI's SHA-256, and the key
# Whether a certificate (by SHA-256) is signed by a key (by its SPKI's SHA-256): the answer never
# changes, and a daemon builds every pairing's scope each cycle, one signature check a
# certificate each time. Emptied when full rather than grown without bound.
_SIGNED: dict[tuple[str, str], bool] = {}
_SIGNED_MAX = 1 << 20
_SIGNED_LOCK = threading.Lock()


class SignatureCache(Protocol):
    """The same answers kept across processes (agent.store.facts_cache): `agent run --once` is
    a fresh process each cycle, where `_SIGNED` starts empty."""

    def signed(self, sha256: str, spki_sha256: str) -> bool | None:
        """Whether the certificate verified with the key, or None if not kept."""
        ...

    def add_signed(self, sha256: str, spki_sha256: str, signed: bool) -> None:
        """Keep the outcome of a signature just verified."""
        ...


_KEPT: SignatureCache | None = None


def install_signature_cache(cache: SignatureCache) -> None:
    """Make the scope consult and fill `cache` (the last one installed wins)."""
    global _KEPT
    _KEPT = cache


def uninstall_signature_cache(cache: SignatureCache) -> None:
    """Stop using `cache`, if it is the one installed (another may have been installed since)."""
    global _KEPT
    if _KEPT is cache:
        _KEPT = None


def _load_keys(spkis: Sequence[bytes]) -> list[Key]:
    return [(sha256_hex(spki), serialization.load_der_public_key(spki)) for spki in spkis]


def signed_by_any(records: Iterable[CertRecord], spkis: Sequence[bytes]) -> list[CertRecord]:
    """The CA certificates among `records` that one of the keys `spkis` signed, as a CT reader
    keeps them (agent.sources.ct), with the signatures' answers cached as the scopes' are."""
    keys = _load_keys(spkis)
    return [r for r in records if r.info.is_ca and any(_signed(r, s, k) for s, k in keys)]


def _issued_under(record: CertRecord, keys: Sequence[Key]) -> bool:
    info = record.info
    if not info.is_ca or (info.self_issued and _self_signed(record)):
        return False
    for spki, key in keys:
        # Read without the lock: a dict's get is atomic, and the answer known is final. A
        # daemon asks this of every certificate of every pairing, every cycle.
        known = _SIGNED.get((info.sha256, spki))
        if known is None:
            known = _signed(record, spki, key)
        if known:
            return True
    return False


def _signed(record: CertRecord, spki: str, key: PublicKeyTypes) -> bool:
    cached = (record.info.sha256, spki)
    with _SIGNED_LOCK:
        known = _SIGNED.get(cached)
    if known is None:
        known = _kept_or_verified(record, spki, key)
        with _SIGNED_LOCK:
            if len(_SIGNED) >= _SIGNED_MAX:
                _SIGNED.clear()
            _SIGNED[cached] = known
    return known


def _kept_or_verified(record: CertRecord, spki: str, key: PublicKeyTypes) -> bool:
    kept = _KEPT
    known = kept.signed(record.sha256, spki) if kept is not None else None
    if known is None:
        known = signed_by(x509.load_der_x509_certificate(record.info.der), key)
        if kept is not None:
            kept.add_signed(record.sha256, spki, known)
    return known


def _attributed(record: CertRecord, subordinate: str, organizations: frozenset[str]) -> bool:
    if record.operator:
        return record.operator == subordinate
    return bool(organizations & subject_organizations(record))
