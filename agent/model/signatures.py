"""Whether a certificate's or CRL's signature verifies with a key, whatever the algorithm pair.

Shared by the readers (CRL and CT entries are kept only when a known CA key signed them) and
the pairing scope (which certificates a root's keys issued)."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

SignatureParams = padding.PSS | padding.PKCS1v15 | ec.ECDSA | None


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
