"""A certificate or CRL signed by the federation CA's key wherever it is (agent.exchange.ca_key).

`cryptography` signs only with a key it holds, and the key of a hardware module is not one. So
the to-be-signed part is made by `cryptography` as usual (signed with a throwaway key, only for
its TBS bytes: its issuer, extensions and signature algorithm are the CA's), the CA key signs
those exact bytes, and the Certificate or CertificateList is assembled around the signature:
SEQUENCE { tbs, ecdsa-with-SHA256, BIT STRING signature }. What is assembled is parsed again
and verified with the CA's public key before it is returned: nothing the CA key did not sign
reaches the register or a file.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.ca_key import CaKey
from invsync.agent.model.der import element
from invsync.agent.model.signatures import signed_by

_SEQUENCE, _BIT_STRING, _OID = 0x30, 0x03, 0x06
# AlgorithmIdentifier { ecdsa-with-SHA256 (1.2.840.10045.4.3.2) }, no parameters (RFC 5758).
ECDSA_SHA256 = element(_SEQUENCE, element(_OID, bytes.fromhex("2a8648ce3d040302")))


class AssemblyError(InvsyncError):
    """A certificate or CRL assembled around the CA key's signature does not verify: a fault
    in invsync, never written anywhere."""

    hint = "Nothing was written. Report this with the command that was run."


def certificate(builder: x509.CertificateBuilder, key: CaKey) -> x509.Certificate:
    """The certificate `builder` describes, signed by `key`."""
    tbs = builder.sign(_throwaway(), hashes.SHA256()).tbs_certificate_bytes
    cert = x509.load_der_x509_certificate(_signed(tbs, key.sign(tbs)))
    ecdsa_sha256 = cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    if not ecdsa_sha256 or not signed_by(cert, key.public):
        raise AssemblyError("the certificate assembled does not verify with the CA's key")
    return cert


def crl(
    builder: x509.CertificateRevocationListBuilder, key: CaKey
) -> x509.CertificateRevocationList:
    """The CRL `builder` describes, signed by `key`."""
    tbs = builder.sign(_throwaway(), hashes.SHA256()).tbs_certlist_bytes
    made = x509.load_der_x509_crl(_signed(tbs, key.sign(tbs)))
    if not made.is_signature_valid(key.public):
        raise AssemblyError("the CRL assembled does not verify with the CA's key")
    return made


def _signed(tbs: bytes, signature: bytes) -> bytes:
    # A BIT STRING's first content byte counts its unused bits: none in a DER signature.
    return element(_SEQUENCE, tbs + ECDSA_SHA256 + element(_BIT_STRING, b"\x00" + signature))


def _throwaway() -> ec.EllipticCurvePrivateKey:
    """A key whose only use is to make `cryptography` write the TBS bytes: P-256 with SHA-256
    gives the TBS the same signature algorithm the CA's key signs with."""
    return ec.generate_private_key(ec.SECP256R1())
