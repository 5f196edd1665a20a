"""A small TLS federation for the demo, tests and pilots: one CA, a server and party clients.

Production can use any existing CA instead; invsync only needs a server certificate with
serverAuth, client certificates with clientAuth whose Common Name is the party's TLS identity,
and the CA bundle that issued them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = timedelta(days=30)
SHA256 = hashes.SHA256()
# Names become file names (NAME.crt, NAME.key) and Common Names: letters, digits, . _ - only.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


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
    """A new federation CA, for `make_federation(..., ca=)` to issue certificates and renewals
    (`tls ca init` makes its own, through `ca_builder`)."""
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
    builder = ca_builder("invsync federation CA", key.public_key(), now, VALIDITY)
    return Issued(builder.sign(key, SHA256), key)


def ca_builder(
    common_name: str, public: ec.EllipticCurvePublicKey, now: datetime, validity: timedelta
) -> x509.CertificateBuilder:
    """The federation CA's self-signed certificate for `public`, to be signed by its key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _base(name, name, public, now, now + validity)
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    builder = builder.add_extension(_key_usage(ca=True), critical=True)
    return builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)


def _server_cert(ca: Issued, server_name: str, now: datetime) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    return Issued(issue(ca, server_name, key.public_key(), server=True, now=now), key)


def _client_cert(ca: Issued, name: str, now: datetime) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    return Issued(issue(ca, name, key.public_key(), server=False, now=now), key)


def issue(
    ca: Issued,
    common_name: str,
    public: CertificatePublicKeyTypes,
    *,
    server: bool,
    now: datetime,
) -> x509.Certificate:
    """A certificate for `public` signed by `ca`, as `leaf_builder` makes it."""
    builder = leaf_builder(ca.cert, common_name, public, server=server, now=now)
    return builder.not_valid_after(now + VALIDITY).sign(ca.key, SHA256)


def leaf_builder(
    issuer: x509.Certificate,
    common_name: str,
    public: CertificatePublicKeyTypes,
    *,
    server: bool,
    now: datetime,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    """A certificate for `public`, from `issuer`, with `common_name` as its one subject
    attribute: for a server (serverAuth, naming the name, 127.0.0.1 and ::1, so that loopback
    tests connect by address) or a party's client (clientAuth, its tls_identity). Its key
    identifiers let a verifier pick the CA key among several (a renewed CA beside the old).
    The caller sets its end (`not_valid_after`) and has the CA's key sign it."""
    sans: list[x509.GeneralName] = [x509.DNSName(common_name)]
    if server:
        sans += [
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = _base(subject, issuer.subject, public, now, None, serial)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
    builder = builder.add_extension(_key_usage(ca=False), critical=True)
    builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    return builder.add_extension(authority_key_id(issuer), critical=False)


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AuthorityKeyIdentifier of what `issuer` signs: its own subject key identifier (a CA
    made before they carried one: the one computed from its key the same way)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public: CertificatePublicKeyTypes,
    now: datetime,
    not_after: datetime | None,
    serial: int | None = None,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
    )
    return builder if not_after is None else builder.not_valid_after(not_after)


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
    write_private_key(key_path, issued.key)
    return TlsFiles(cert_path, key_path, ca_path)


def write_private_key(
    path: Path, key: ec.EllipticCurvePrivateKey, *, exclusive: bool = False
) -> None:
    """`key` as unencrypted PKCS#8 PEM, in a file created 0600 from the start: a private key is
    never world-readable, not even briefly. `exclusive`: refuse to replace an existing file."""
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
        out.flush()
        os.fsync(out.fileno())
