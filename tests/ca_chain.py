"""Test helpers: small CA hierarchies made with `cryptography`, really signed.

For what the real SECOM/JPRS certificates cannot show: certificates signed by a subordinate's
CA key (nobody here holds JPRS's), one key certified by two roots, revocations chosen by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from invsync.agent.model.record import CertRecord, SourceRef, parse_certificate

NOT_BEFORE = datetime(2020, 7, 10, tzinfo=UTC)


@dataclass(frozen=True)
class Ca:
    """A CA: its name, its key, and the certificate that certifies the key."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)


def name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def root(common_name: str, organization: str) -> Ca:
    """A self-signed root CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = name(common_name, organization)
    return Ca(subject, key, _sign(subject, key.public_key(), subject, key, serial=1))


def issue(
    issuer: Ca,
    common_name: str,
    organization: str,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    serial: int = 0x1695993,
    aki: bool = True,
    precert: bool = False,
) -> Ca:
    """A CA certificate `issuer` signs for `key` (a new one unless given: give the same key to
    two issuers for a cross-sign). `aki=False` leaves out the AuthorityKeyIdentifier."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = name(common_name, organization)
    cert = _sign(
        subject, key.public_key(), issuer.name, issuer.key, serial=serial, aki=aki, poison=precert
    )
    return Ca(subject, key, cert)


def record(ca: Ca, operator: str | None = None, kind: str = "pem") -> CertRecord:
    """`ca`'s certificate as a record a source of `kind` gave, with `operator` if given."""
    source = SourceRef(kind, f"test:{ca.cert.serial_number:x}", NOT_BEFORE, NOT_BEFORE)
    return CertRecord(parse_certificate(ca.der), operator=operator, sources=(source,))


def _sign(
    subject: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    *,
    serial: int,
    aki: bool = True,
    poison: bool = False,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_BEFORE + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    if poison:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(signer, hashes.SHA256())
