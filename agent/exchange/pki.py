"""A small TLS federation for the demo, tests and pilots: one CA, a server and party clients.

Production can use any existing CA instead; invsync only needs a server certificate with
serverAuth, client certificates with clientAuth whose Common Name is the party's TLS identity,
and the CA bundle that issued them.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, in memory."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_ca() -> Issued:
    """A new federation CA, for `make_federation(..., ca=)` to issue certificates and renewals."""
    return _make_ca(datetime.now(UTC))


def make_federation(
    directory: Path, server_name: str, clients: list[str], ca: Issued | None = None
) -> dict[str, TlsFiles]:
    """Write a CA, a server certificate for `server_name` and one client certificate per name.

    Returns TlsFiles keyed by "server" and by each client name. The server certificate also
    names 127.0.0.1 and ::1 so loopback tests can connect by address. Every certificate has a
    new key. Without `ca` a new CA issues them and its key is not kept; with it, that CA, so a
    second call renews the certificates of the same federation.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca = ca or _make_ca(now)
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    files = {"server": _write(directory, "server", _server_cert(ca, server_name, now), ca_path)}
    for name in clients:
        files[name] = _write(directory, name, _client_cert(ca, name, now), ca_path)
    return files


def _make_ca(now: datetime) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "invsync federation CA")])
    builder = _base(name, name, key.public_key(), now).add_extension(
        x509.BasicConstraints(ca=True, path_length=0), critical=True
    )
    builder = builder.add_extension(_key_usage(ca=True), critical=True)
    return Issued(builder.sign(key, hashes.SHA256()), key)


def _server_cert(ca: Issued, server_name: str, now: datetime) -> Issued:
    sans: list[x509.GeneralName] = [
        x509.DNSName(server_name),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    return _leaf(ca, server_name, sans, ExtendedKeyUsageOID.SERVER_AUTH, now)


def _client_cert(ca: Issued, name: str, now: datetime) -> Issued:
    return _leaf(ca, name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH, now)


def _leaf(
    ca: Issued,
    common_name: str,
    sans: list[x509.GeneralName],
    eku: x509.ObjectIdentifier,
    now: datetime,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _base(subject, ca.cert.subject, key.public_key(), now)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def _base(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(directory: Path, name: str, issued: Issued, ca_path: Path) -> TlsFiles:
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    key_pem = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created 0600 from the start: a private key is never world-readable, not even briefly.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    return TlsFiles(cert_path, key_path, ca_path)
