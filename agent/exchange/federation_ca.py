"""The federation's own TLS CA, whose key stays on the exchange operator's host (issue 14).

`tls init` makes a CA for a pilot and drops its key, so a party that joins later means new
certificates for everyone. Here the CA is a directory the operator keeps: its certificate
(`ca.pem`, handed to every party), its key (`ca.key`, mode 0600, never sent anywhere), a
register (`issued.jsonl`: one JSON object per certificate, appended and synced before the
certificate is written out, and one per revocation) and the CRL of what it revoked (`crl.pem`,
the server's `tls.client_crl`). A party makes its own key and a certificate signing request on
its own host (agent.exchange.tls_request) and sends only the request; the operator signs it
here. So no private key moves between hosts.

A request is verified before anything is read from it: its signature with the key it carries
(proof that whoever sent it holds that key), then its subject, which must be exactly one
Common Name, a plain name (the party's tls_identity, or the server's DNS name). Nothing else in
the request is copied: the certificate's extensions are the ones `pki.issue` sets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.pki import PLAIN_NAME, Issued, issue, new_ca, write_private_key
from invsync.agent.files import exposed_mode, fsync_directory, write_atomically

CA_CERT, CA_KEY, REGISTER, CRL = "ca.pem", "ca.key", "issued.jsonl", "crl.pem"
CA_VALIDITY = timedelta(days=1826)  # five years: the CA outlives many renewals of its leaves
DEFAULT_DAYS = 90
# The CA/Browser Forum's longest server certificate lifetime, a bound for clients here too:
# a leaked client key stays useful until its certificate expires or is revoked.
MAX_DAYS = 397
# A CRL's nextUpdate: the server warns once it has passed, so the operator signs one again.
CRL_VALIDITY = timedelta(days=30)


class FederationCaError(InvsyncError):
    """The federation CA's directory, or a request given to it, is refused. The message says
    which file and why."""

    hint = (
        "Check the CA directory (made by `invsync tls ca init`) and that the request was made by "
        "`invsync tls request` on the party's host, then sign again."
    )


@dataclass(frozen=True)
class Signed:
    """A certificate the CA issued, and where the register holds it."""

    cert: x509.Certificate
    kind: str  # "client" or "server"
    register: Path


def init_ca(directory: Path, common_name: str = "invsync federation CA") -> tuple[Path, Path]:
    """A new CA in `directory` (new or empty): its certificate and key; the register empty."""
    if directory.exists() and any(directory.iterdir()):
        raise FederationCaError(f"{directory} is not empty; refusing to write a CA into it")
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca(CA_VALIDITY, common_name)
    key_path = directory / CA_KEY
    write_private_key(key_path, ca.key, exclusive=True)
    cert_path = directory / CA_CERT
    cert_path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (directory / REGISTER).touch(mode=0o600)
    fsync_directory(directory)
    return cert_path, key_path


def sign_request(
    directory: Path,
    csr_pem: bytes,
    where: str,
    *,
    server: bool,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> Signed:
    """The certificate for the request in `csr_pem` (read from `where`), issued by the CA in
    `directory` and recorded in its register first."""
    if not 1 <= days <= MAX_DAYS:
        raise FederationCaError(f"--days must be within 1 and {MAX_DAYS}, got {days}")
    name, public = _checked_request(csr_pem, where)
    ca = load_ca(directory)
    register = directory / REGISTER
    serials = {entry["serial"] for entry in read_register(register) if "kind" in entry}
    serial = x509.random_serial_number()
    while f"{serial:x}" in serials:  # 159 random bits: a repeat is all but impossible
        serial = x509.random_serial_number()
    when = now or datetime.now(UTC)
    validity = timedelta(days=days)
    cert = issue(ca, name, public, server=server, now=when, validity=validity, serial=serial)
    kind = "server" if server else "client"
    _append(register, _entry(cert, kind, when))
    return Signed(cert, kind, register)


def load_ca(directory: Path) -> Issued:
    """The CA of `directory`: its certificate and its key, which must be private (0600) and
    match the certificate."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    for path in (cert_path, key_path, directory / REGISTER):
        if not path.is_file():
            raise FederationCaError(f"{path}: missing; is {directory} a CA made by tls ca init?")
    mode = exposed_mode(key_path)
    if mode is not None:
        raise FederationCaError(
            f"{key_path} is open to group or others (mode {mode:04o}); chmod 600 it"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise FederationCaError(f"{cert_path}: the CA certificate does not load ({e})") from e
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise FederationCaError(f"{key_path}: the CA key does not load ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise FederationCaError(f"{key_path} is not the key of {cert_path}")
    return Issued(cert, key)


def revoke(
    directory: Path, serial: str, reason: str = "", now: datetime | None = None
) -> Revocation:
    """Revoke the certificate of `serial` (hex, in any of the usual spellings: leading zeros,
    colons, `0x`, either case): a line more in the register, then the CA's CRL of every revoked
    serial written again. A serial already revoked only writes the CRL again: a revocation whose
    CRL could not be written is completed so, and a CRL near its next update signed anew."""
    ca = load_ca(directory)
    register = directory / REGISTER
    entries = read_register(register)
    wanted = _serial(serial)
    issued = [e for e in entries if "kind" in e and e["serial"] == wanted]
    if not issued:
        raise FederationCaError(f"{register}: no certificate with serial {serial} was signed here")
    when = now or datetime.now(UTC)
    already = any("revoked_at" in e and e["serial"] == wanted for e in entries)
    if not already:
        entry = {"serial": wanted, "revoked_at": when.isoformat(), "reason": reason}
        entries.append(entry)
    revoked = [(int(e["serial"], 16), e["revoked_at"]) for e in entries if "revoked_at" in e]
    crl = crl_of(ca, revoked, when)  # made before the register changes: a CA that cannot sign
    if not already:
        _append(register, entry)
    path = directory / CRL
    try:
        write_atomically(path, crl.public_bytes(serialization.Encoding.PEM))
    except OSError as e:
        raise FederationCaError(
            f"{path}: cannot write the CRL ({e.strerror}); the register holds the revocation: "
            "run the same `tls revoke` again to write it"
        ) from e
    return Revocation(issued[0], path, already)


@dataclass(frozen=True)
class Revocation:
    """What `revoke` did: the certificate's register entry, the CRL written, and whether the
    serial was revoked before (the CRL alone was written again)."""

    entry: dict[str, str]
    crl: Path
    again: bool


def _serial(text: str) -> str:
    """A serial as the register writes it (lowercase hex, no leading zeros)."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return f"{int(digits, 16):x}"
    except ValueError:
        raise FederationCaError(f"serial {text!r} is not a hexadecimal number") from None


def crl_of(
    ca: Issued, revoked: list[tuple[int, str]], now: datetime
) -> x509.CertificateRevocationList:
    """The CA's CRL of these (serial, RFC 3339 time of revocation), valid CRL_VALIDITY."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + CRL_VALIDITY)
    )
    for number, at in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(number)
            .revocation_date(datetime.fromisoformat(at))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256())


def read_register(register: Path) -> list[dict[str, str]]:
    """The register's entries, oldest first; FederationCaError naming the line that is not one."""
    entries = []
    for number, line in enumerate(register.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise FederationCaError(f"{register}:{number}: not a JSON object ({e.msg})") from e
        if not isinstance(entry, dict) or not isinstance(entry.get("serial"), str):
            raise FederationCaError(f"{register}:{number}: not an entry with a serial")
        entries.append(entry)
    return entries


def _checked_request(csr_pem: bytes, where: str) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The name a request asks for and its key, once its signature verifies."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise FederationCaError(f"{where}: not a PEM certificate signing request ({e})") from e
    try:
        public = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as e:
        raise FederationCaError(f"{where}: its key or signature cannot be read ({e})") from e
    if not valid:
        raise FederationCaError(f"{where}: its signature does not verify with its own key")
    return _requested_name(csr.subject, where), _checked_key(public, where)


def _checked_key(public: object, where: str) -> ec.EllipticCurvePublicKey:
    if isinstance(public, rsa.RSAPublicKey):
        raise FederationCaError(
            f"{where}: an RSA key ({public.key_size} bits); make the request with "
            "`invsync tls request`, which makes a P-256 key"
        )
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise FederationCaError(f"{where}: its key is not a P-256 or P-384 key")
    return public


def _requested_name(subject: x509.Name, where: str) -> str:
    attributes = list(subject)
    if len(attributes) != 1 or attributes[0].oid != NameOID.COMMON_NAME:
        raise FederationCaError(
            f"{where}: its subject must be one Common Name alone, got {subject.rfc4514_string()!r}"
        )
    name = attributes[0].value
    if not isinstance(name, str) or not PLAIN_NAME.fullmatch(name):
        raise FederationCaError(
            f"{where}: Common Name {name!r}: use letters, digits, '.', '_' and '-' only"
        )
    return name


def _entry(cert: x509.Certificate, kind: str, when: datetime) -> dict[str, str]:
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    return {
        "serial": f"{cert.serial_number:x}",
        "common_name": str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
        "kind": kind,
        "issued_at": when.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": fingerprint,
    }


def _append(register: Path, entry: dict[str, str]) -> None:
    """One line more, on disk before the certificate is handed out."""
    with register.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())
