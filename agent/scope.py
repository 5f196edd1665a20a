"""Which of a party's records belong to a pairing (DESIGN §2, §7).

A pairing's scope is defined by the root's CA keys: a certificate is under the root when its
signature verifies with one of those keys. Names are never trusted for this (anyone can write
"SECOM" in an issuer field, and an issuer name does not say which of a root's keys signed).
Self-signed certificates are the roots themselves, never something issued to a subordinate.

On the root's side, the pairing's subordinate is picked by operator attribution; a record with no
operator falls back to the subject's organization, as CCADB's "Subordinate CA Owner" does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from agent.attribution import subject_organizations
from agent.record import CertRecord

# What `cryptography` gives as `signature_algorithm_parameters` of a certificate or a CRL.
SignatureParams = padding.PSS | padding.PKCS1v15 | ec.ECDSA | None


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
    """The subordinate's CA certificates signed by one of the root's keys (not self-signed).
    Input order is kept."""
    keys = _load_keys(issuer_spkis)
    return [record for record in records if _issued_under(record, keys)]


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


def signed_by(cert: x509.Certificate, key: PublicKeyTypes) -> bool:
    """Whether `cert`'s signature verifies with `key`, whatever the algorithm pair."""
    return signature_verifies(
        key,
        cert.signature,
        cert.tbs_certificate_bytes,
        cert.signature_algorithm_parameters,
        cert.signature_hash_algorithm,
    )


def signature_verifies(
    key: PublicKeyTypes,
    signature: bytes,
    data: bytes,
    params: SignatureParams,
    digest: hashes.HashAlgorithm | None,
) -> bool:
    """Whether `signature` over `data` verifies with `key`, given the signed object's algorithm
    parameters and hash (as `cryptography` exposes them on certificates and CRLs). Any hash the
    key type accepts is verified, SHA-1 included: callers decide what a weak hash means."""
    try:
        _verify(key, signature, data, params, digest)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        # A key of another type than the signature's algorithm did not sign it.
        return False
    return True


def _verify(
    key: PublicKeyTypes,
    signature: bytes,
    data: bytes,
    params: SignatureParams,
    digest: hashes.HashAlgorithm | None,
) -> None:
    if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PKCS1v15 | padding.PSS):
        if digest is None:
            raise TypeError("RSA signature without a hash")
        key.verify(signature, data, params, digest)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
        key.verify(signature, data, params)
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) and params is None:
        key.verify(signature, data)
    else:
        raise TypeError("key type does not match the signature algorithm")


def _load_keys(spkis: Sequence[bytes]) -> list[PublicKeyTypes]:
    return [serialization.load_der_public_key(spki) for spki in spkis]


def _issued_under(record: CertRecord, keys: Sequence[PublicKeyTypes]) -> bool:
    if not record.info.is_ca:
        return False
    cert = x509.load_der_x509_certificate(record.info.der)
    return not _self_signed(record, cert) and any(signed_by(cert, key) for key in keys)


def _attributed(record: CertRecord, subordinate: str, organizations: frozenset[str]) -> bool:
    if record.operator:
        return record.operator == subordinate
    return bool(organizations & subject_organizations(record))
