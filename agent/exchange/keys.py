"""Snapshot and report signing keys: generate, load and write PEM, public key, key id.

A party signs with Ed25519 (the default) or ECDSA on P-256 (with SHA-256) or P-384 (with
SHA-384); nothing else is accepted, so a verifier never has to guess a hash or a padding.
A key id is the lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER, the same
value on every platform and in every file format.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from invsync.agent.errors import KeyLoadError

KeyKind = Literal["ed25519", "ecdsa-p256", "ecdsa-p384"]
KINDS: tuple[KeyKind, ...] = ("ed25519", "ecdsa-p256", "ecdsa-p384")

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

# Each allowed curve fixes its hash, so a signature can never be checked with a weaker one.
_CURVES: dict[str, tuple[KeyKind, type[hashes.HashAlgorithm]]] = {
    "secp256r1": ("ecdsa-p256", hashes.SHA256),
    "secp384r1": ("ecdsa-p384", hashes.SHA384),
}
_CURVE_OF_KIND: dict[str, ec.EllipticCurve] = {
    "ecdsa-p256": ec.SECP256R1(),
    "ecdsa-p384": ec.SECP384R1(),
}


class VerifyKey:
    """A public key that checks signatures; `keyid` names it in envelopes and policies."""

    def __init__(self, key: PublicKey) -> None:
        self._key = key
        self.kind: KeyKind = _kind_of(key)
        self.spki_der: bytes = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.keyid: str = hashlib.sha256(self.spki_der).hexdigest()

    def verify(self, sig: bytes, data: bytes) -> bool:
        """True if `sig` is this key's signature over `data`; never raises on a bad signature."""
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(sig, data)
            else:
                self._key.verify(sig, data, ec.ECDSA(_hash_of(self._key)))
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_pem(self) -> bytes:
        """The key as a PEM SubjectPublicKeyInfo ("BEGIN PUBLIC KEY")."""
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.spki_der == self.spki_der

    def __hash__(self) -> int:
        return hash(self.spki_der)

    def __repr__(self) -> str:
        return f"VerifyKey({self.kind}, keyid={self.keyid})"


class SigningKey:
    """A private signing key. Its `repr` never shows key material."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self.public = VerifyKey(key.public_key())

    @property
    def keyid(self) -> str:
        return self.public.keyid

    @property
    def kind(self) -> KeyKind:
        return self.public.kind

    def sign(self, data: bytes) -> bytes:
        """Sign `data`: raw 64 bytes for Ed25519, DER (r, s) for ECDSA."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, ec.ECDSA(_hash_of(self._key.public_key())))

    def private_pem(self, passphrase: bytes | None = None) -> bytes:
        """The key as PKCS#8 PEM, encrypted with `passphrase` when one is given."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def __repr__(self) -> str:
        return f"SigningKey({self.kind}, keyid={self.keyid})"


def generate(kind: str = "ed25519") -> SigningKey:
    """A fresh signing key of `kind`: "ed25519", "ecdsa-p256" or "ecdsa-p384"."""
    if kind == "ed25519":
        return SigningKey(ed25519.Ed25519PrivateKey.generate())
    if kind in _CURVE_OF_KIND:
        return SigningKey(ec.generate_private_key(_CURVE_OF_KIND[kind]))
    raise KeyLoadError(f"unsupported key kind {kind!r}; use one of {', '.join(KINDS)}")


def load_signing_key(path: str | Path, passphrase: bytes | None = None) -> SigningKey:
    """Read a PKCS#8 (or traditional) PEM private key; KeyLoadError names `path` on failure."""
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as e:
        # cryptography says "password was (not) given" as a TypeError: a user error here.
        raise KeyLoadError(f"signing key {path}: {_passphrase_problem(passphrase)}") from e
    except ValueError as e:
        raise KeyLoadError(f"signing key {path}: {_value_problem(data, passphrase)}") from e
    except UnsupportedAlgorithm as e:
        raise KeyLoadError(f"signing key {path}: unsupported key algorithm ({e})") from e
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyLoadError(f"signing key {path}: {_unsupported(key)}")
    _check_curve(key.public_key(), f"signing key {path}")
    return SigningKey(key)


def load_verify_key(path: str | Path) -> VerifyKey:
    """Read a PEM public key ("BEGIN PUBLIC KEY"); KeyLoadError names `path` on failure."""
    data = _read(path, "public key")
    if b"-----BEGIN CERTIFICATE-----" in data:
        # Pinning a certificate would pin whatever its issuer vouches for; we pin keys only.
        raise KeyLoadError(f"public key {path}: is a certificate, not a PEM public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyLoadError(f"public key {path}: {_not_pem_or_bad(data, 'public key')}") from e
    return _verify_key(key, f"public key {path}")


def verify_key_from_spki_der(der: bytes, *, source: str = "SubjectPublicKeyInfo") -> VerifyKey:
    """A VerifyKey from SubjectPublicKeyInfo DER; `source` names where the bytes came from."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyLoadError(f"{source}: not a DER SubjectPublicKeyInfo ({e})") from e
    return _verify_key(key, source)


def write_private_key(path: str | Path, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Write `key` as PKCS#8 PEM to a new file created with mode 0600.

    The mode is given to open(2) itself, so the key is never readable by others, not even
    between creation and a later chmod. An existing file is never overwritten: losing a
    party's pinned key would lock it out of the federation.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as e:
        raise KeyLoadError(f"signing key {path}: already exists; refusing to overwrite") from e
    except OSError as e:
        raise KeyLoadError(f"signing key {path}: cannot create ({e.strerror})") from e
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_pem(passphrase))
        f.flush()
        os.fsync(f.fileno())


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise KeyLoadError(f"{what} {path}: cannot read ({e.strerror})") from e


def _verify_key(key: object, where: str) -> VerifyKey:
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise KeyLoadError(f"{where}: {_unsupported(key)}")
    _check_curve(key, where)
    return VerifyKey(key)


def _kind_of(key: PublicKey) -> KeyKind:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return _CURVES[key.curve.name][0]


def _hash_of(key: ec.EllipticCurvePublicKey) -> hashes.HashAlgorithm:
    return _CURVES[key.curve.name][1]()


def _check_curve(key: PublicKey, where: str) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVES:
        raise KeyLoadError(
            f"{where}: ECDSA on {key.curve.name} is not allowed; use Ed25519, P-256 or P-384"
        )


def _unsupported(key: object) -> str:
    name = type(key).__name__.removeprefix("_").replace("PrivateKey", "").replace("PublicKey", "")
    return f"{name} keys are not allowed; use Ed25519 or ECDSA P-256/P-384"


def _passphrase_problem(passphrase: bytes | None) -> str:
    if passphrase is None:
        return "is encrypted; a passphrase is required"
    return "is not encrypted; no passphrase is needed"


def _value_problem(data: bytes, passphrase: bytes | None) -> str:
    if passphrase is not None and b"ENCRYPTED" in data:
        return "wrong passphrase (could not decrypt the key)"
    return _not_pem_or_bad(data, "private key")


def _not_pem_or_bad(data: bytes, what: str) -> str:
    if b"-----BEGIN " not in data:
        return f"not a PEM file (expected '-----BEGIN ...' of a {what})"
    return f"not a readable PEM {what}"
