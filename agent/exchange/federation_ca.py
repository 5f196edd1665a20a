"""The federation's own TLS CA, whose key stays on the exchange operator's host (issue 14).

`tls init` makes a CA for a pilot and drops its key, so a party that joins later means new
certificates for everyone. Here the CA is a directory the operator keeps: its certificate
(`ca.pem`, handed to every party), its key (`ca.key`, mode 0600, never sent anywhere; or
`key-command.json`, the command that signs with a key in a hardware module: agent.exchange.
ca_key), a register (`issued.jsonl`, agent.exchange.ca_register), the CRL of what it revoked
(`crl.pem`, the server's `tls.client_crl`) and the number of the last CRL (`crl-number`). A
lock (`lock`, agent.exchange.ca_lock) lets one `tls sign` or `tls revoke` at a time read the
register, sign and record. Whatever the key, the certificate or CRL is assembled around its
signature and verified with the CA's public key before anything is recorded or written
(agent.exchange.ca_sign). A party makes its own key and a certificate signing request on
its own host (agent.exchange.tls_request) and sends only the request; the operator signs it
here. So no private key moves between hosts.

A request is verified before anything is read from it: its signature with the key it carries
(proof that whoever sent it holds that key), then its subject, which must be exactly one
Common Name, a plain name (the party's tls_identity, or the server's DNS name). Nothing else in
the request is copied: the certificate's extensions are the ones `pki.leaf_builder` sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import ca_sign
from invsync.agent.exchange.ca_key import (
    CURVES,
    KEY_COMMAND,
    CaKey,
    CommandKey,
    FileKey,
    KeyCommand,
    load_public_key,
    read_key_command,
)
from invsync.agent.exchange.ca_lock import WAIT, holding
from invsync.agent.exchange.ca_register import REGISTER, append, read_entries
from invsync.agent.exchange.pki import (
    PLAIN_NAME,
    Issued,
    authority_key_id,
    ca_builder,
    leaf_builder,
    write_private_key,
)
from invsync.agent.files import exposed_mode, fsync_directory, write_atomically

CA_CERT, CA_KEY, CRL, CRL_NUMBER = "ca.pem", "ca.key", "crl.pem", "crl-number"
CA_VALIDITY = timedelta(days=1826)  # five years: the CA outlives many renewals of its leaves
DEFAULT_DAYS = 90
# The CA/Browser Forum's longest server certificate lifetime, a bound for clients here too:
# a leaked client key stays useful until its certificate expires or is revoked.
MAX_DAYS = 397
# A CRL's nextUpdate: the server warns once it has passed, so the operator signs one again.
CRL_VALIDITY = timedelta(days=30)


def _quiet(message: str) -> None:
    """A notice nobody reads (the library's callers that print nothing)."""


class FederationCaError(InvsyncError):
    """The federation CA's directory, or a request given to it, is refused. The message says
    which file and why."""

    hint = (
        "Check the CA directory (made by `invsync tls ca init`) and that the request was made by "
        "`invsync tls request` on the party's host, then sign again."
    )


@dataclass(frozen=True)
class FederationCa:
    """A CA directory's certificate and what signs for it."""

    cert: x509.Certificate
    key: CaKey
    directory: Path


@dataclass(frozen=True)
class Signed:
    """A certificate the CA issued, where the register holds it, and whether its end was cut
    to the CA certificate's own."""

    cert: x509.Certificate
    kind: str  # "client" or "server"
    register: Path
    capped: bool = False


def init_ca(
    directory: Path,
    common_name: str = "invsync federation CA",
    command: KeyCommand | None = None,
    public_key: Path | None = None,
) -> tuple[Path, Path]:
    """A new CA in `directory` (new or empty): its certificate and its key file, or with
    `command` (and the module's `public_key`) the record of the key command, which signs the CA
    certificate itself; the register empty. Nothing is left in `directory` if signing fails."""
    if directory.exists() and any(directory.iterdir()):
        raise FederationCaError(f"{directory} is not empty; refusing to write a CA into it")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        return _init_in(directory, common_name, command, public_key)
    except BaseException:
        if created and not any(directory.iterdir()):
            directory.rmdir()
        raise


def _init_in(
    directory: Path, common_name: str, command: KeyCommand | None, public_key: Path | None
) -> tuple[Path, Path]:
    key: CaKey
    if command is None:
        key = FileKey(ec.generate_private_key(ec.SECP256R1()))
    else:
        if public_key is None:
            raise FederationCaError("--key-command needs --public-key: the key's public half")
        key = CommandKey(command, load_public_key(public_key), str(public_key), directory)
    now = datetime.now(UTC)
    cert = ca_sign.certificate(ca_builder(common_name, key.public, now, CA_VALIDITY), key)
    if isinstance(key, FileKey):
        key_path = directory / CA_KEY
        write_private_key(key_path, key.key, exclusive=True)
    else:
        key_path = directory / KEY_COMMAND
        _write_private(key_path, key.command.record())
    cert_path = directory / CA_CERT
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / REGISTER).touch(mode=0o600)
    fsync_directory(directory)
    return cert_path, key_path


def _write_private(path: Path, text: str) -> None:
    """`text` in a new file, 0600 from the start: what signs for the CA is the operator's."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def sign_request(
    directory: Path,
    csr_pem: bytes,
    where: str,
    *,
    server: bool,
    days: int = DEFAULT_DAYS,
    now: datetime | None = None,
    notice: Callable[[str], None] = _quiet,
    lock_wait: float = WAIT,
) -> Signed:
    """The certificate for the request in `csr_pem` (read from `where`), issued by the CA in
    `directory` and recorded in its register first. It ends `days` on, or with the CA
    certificate if that is sooner (`Signed.capped`)."""
    if not 1 <= days <= MAX_DAYS:
        raise FederationCaError(f"--days must be within 1 and {MAX_DAYS}, got {days}")
    name, public = _checked_request(csr_pem, where)
    ca = load_ca(directory)
    when = now or datetime.now(UTC)
    ca_end = ca.cert.not_valid_after_utc
    if ca_end <= when:
        raise FederationCaError(
            f"{directory / CA_CERT}: the CA certificate expired {ca_end:%Y-%m-%d}; it signs "
            "nothing more: make a new CA with `tls ca init`"
        )
    asked = when + timedelta(days=days)
    end = min(asked, ca_end)
    kind = "server" if server else "client"
    with holding(directory, notice, lock_wait):
        register = directory / REGISTER
        serial = _fresh_serial({entry["serial"] for entry in read_entries(register, notice)})
        builder = leaf_builder(ca.cert, name, public, server=server, now=when, serial=serial)
        cert = ca_sign.certificate(builder.not_valid_after(end), ca.key)
        append(register, _entry(cert, kind, when))
    return Signed(cert, kind, register, capped=asked > ca_end)


def _fresh_serial(used: set[str]) -> int:
    """A serial the register never held: 159 random bits, drawn again on a repeat."""
    serial = x509.random_serial_number()
    while f"{serial:x}" in used:
        serial = x509.random_serial_number()
    return serial


def load_ca(directory: Path) -> FederationCa:
    """The CA of `directory`: its certificate and what signs for it, its key file or its key
    command, which must be private (0600); a key file must match the certificate."""
    cert_path, key_path, command_path = (directory / n for n in (CA_CERT, CA_KEY, KEY_COMMAND))
    for path in (cert_path, directory / REGISTER):
        if not path.is_file():
            raise FederationCaError(f"{path}: missing; is {directory} a CA made by tls ca init?")
    if key_path.is_file() == command_path.is_file():
        raise FederationCaError(
            f"{directory} holds both {CA_KEY} and {KEY_COMMAND}; keep the one that signs"
            if key_path.is_file()
            else f"{key_path}: missing, and no {KEY_COMMAND}; is {directory} a CA made by "
            "tls ca init?"
        )
    private = key_path if key_path.is_file() else command_path
    mode = exposed_mode(private)
    if mode is not None:
        raise FederationCaError(
            f"{private} is open to group or others (mode {mode:04o}); chmod 600 it"
        )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as e:
        raise FederationCaError(f"{cert_path}: the CA certificate does not load ({e})") from e
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name not in CURVES:
        raise FederationCaError(f"{cert_path}: the CA's key is not a P-256 or P-384 key")
    if private == command_path:
        command = read_key_command(command_path)
        return FederationCa(cert, CommandKey(command, public, str(cert_path), directory), directory)
    return FederationCa(cert, _file_key(key_path, public), directory)


def _file_key(path: Path, public: ec.EllipticCurvePublicKey) -> FileKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise FederationCaError(f"{path}: the CA key does not load ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != public:
        raise FederationCaError(f"{path} is not the key of {path.with_name(CA_CERT)}")
    return FileKey(key)


def serial_of_file(directory: Path, path: Path) -> str:
    """The serial (hex) of the certificate in the PEM file `path`, which this CA's register
    must hold by its SHA-256: a certificate of another CA with a serial that happens to be in
    the register is not revoked in its place."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        raise FederationCaError(f"{path}: not a readable PEM certificate ({e})") from e
    serial = f"{cert.serial_number:x}"
    fingerprint = cert.fingerprint(hashes.SHA256()).hex().upper()
    register = directory / REGISTER
    if not any(e.get("sha256") == fingerprint for e in read_entries(register, _quiet)):
        raise FederationCaError(
            f"{path}: certificate serial {serial} (SHA-256 {fingerprint[:16]}...) was not "
            f"signed by the CA in {directory} (not in {register})"
        )
    return serial


def revoke(
    directory: Path,
    serial: str,
    reason: str = "",
    now: datetime | None = None,
    notice: Callable[[str], None] = _quiet,
    lock_wait: float = WAIT,
) -> Revocation:
    """Revoke the certificate of `serial` (hex, in any of the usual spellings: leading zeros,
    colons, `0x`, either case): a line more in the register, then the CA's CRL of every revoked
    serial written again, numbered one above the last. A serial already revoked only writes the
    CRL again: a revocation whose CRL could not be written is completed so, and a CRL near its
    next update signed anew."""
    ca = load_ca(directory)
    wanted = _serial(serial)
    with holding(directory, notice, lock_wait):
        register = directory / REGISTER
        entries = read_entries(register, notice)
        issued = [e for e in entries if "kind" in e and e["serial"] == wanted]
        if not issued:
            raise FederationCaError(
                f"{register}: no certificate with serial {serial} was signed here"
            )
        when = now or datetime.now(UTC)
        already = any("revoked_at" in e and e["serial"] == wanted for e in entries)
        if not already:
            entry = {"serial": wanted, "revoked_at": when.isoformat(), "reason": reason}
            entries.append(entry)
        revoked = [(int(e["serial"], 16), e["revoked_at"]) for e in entries if "revoked_at" in e]
        number = _last_crl_number(directory) + 1
        # Signed before anything changes: a CA key that cannot sign leaves the CA as it was.
        crl = ca_sign.crl(crl_builder(ca.cert, revoked, when, number), ca.key)
        _record_crl_number(directory, number)
        if not already:
            append(register, entry)
        path = directory / CRL
        try:
            write_atomically(path, crl.public_bytes(serialization.Encoding.PEM))
        except OSError as e:
            raise FederationCaError(
                f"{path}: cannot write the CRL ({e.strerror}); the register holds the "
                "revocation: run the same `tls revoke` again to write it"
            ) from e
    return Revocation(issued[0], path, already, number)


@dataclass(frozen=True)
class Revocation:
    """What `revoke` did: the certificate's register entry, the CRL written and its number,
    and whether the serial was revoked before (the CRL alone was written again)."""

    entry: dict[str, str]
    crl: Path
    again: bool
    number: int


def _last_crl_number(directory: Path) -> int:
    """The number of the last CRL this CA signed; 0 before its first (or for a CA directory
    made before CRLs were numbered)."""
    path = directory / CRL_NUMBER
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return 0
    except (OSError, ValueError) as e:
        raise FederationCaError(f"{path}: cannot read the last CRL number ({e})") from e
    if not text.strip().isdigit():
        raise FederationCaError(f"{path}: not a CRL number (a decimal number), got {text!r}")
    return int(text)


def _record_crl_number(directory: Path, number: int) -> None:
    path = directory / CRL_NUMBER
    try:
        write_atomically(path, f"{number}\n")
    except OSError as e:
        raise FederationCaError(
            f"{path}: cannot record CRL number {number} ({e.strerror}); nothing was revoked"
        ) from e


def _serial(text: str) -> str:
    """A serial as the register writes it (lowercase hex, no leading zeros)."""
    digits = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return f"{int(digits, 16):x}"
    except ValueError:
        raise FederationCaError(f"serial {text!r} is not a hexadecimal number") from None


def crl_builder(
    issuer: x509.Certificate, revoked: list[tuple[int, str]], now: datetime, number: int
) -> x509.CertificateRevocationListBuilder:
    """The CRL of these (serial, RFC 3339 time of revocation), valid CRL_VALIDITY, numbered
    `number` (CRLNumber: a reader can tell the newer of two), naming the CA's key."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(authority_key_id(issuer), critical=False)
    )
    for serial, at in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(datetime.fromisoformat(at))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder


def crl_of(
    ca: Issued, revoked: list[tuple[int, str]], now: datetime
) -> x509.CertificateRevocationList:
    """The CRL of an in-memory CA (`pki.new_ca`: tests and pilots), numbered 1."""
    return crl_builder(ca.cert, revoked, now, 1).sign(ca.key, hashes.SHA256())


def _checked_request(csr_pem: bytes, where: str) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The name a request asks for and its key, once its signature verifies."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise FederationCaError(f"{where}: not a PEM certificate signing request ({e})") from e
    try:
        public = csr.public_key()
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise FederationCaError(f"{where}: its key or signature cannot be read ({e})") from e
    if not valid:
        raise FederationCaError(f"{where}: its signature does not verify with its own key")
    return _requested_name(csr, where), _checked_key(public, where)


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


def _requested_name(csr: x509.CertificateSigningRequest, where: str) -> str:
    # The subject is parsed only when first read, after the signature: a request its own key
    # signed may still name itself in a string type no Common Name has (an INTEGER, a BIT
    # STRING, bytes that are not UTF-8).
    try:
        subject = csr.subject
        attributes = list(subject)
        shown = subject.rfc4514_string()
    except (ValueError, TypeError) as e:
        raise FederationCaError(f"{where}: its subject cannot be read ({e})") from e
    if len(attributes) != 1 or attributes[0].oid != NameOID.COMMON_NAME:
        raise FederationCaError(
            f"{where}: its subject must be one Common Name alone, got {shown!r}"
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
