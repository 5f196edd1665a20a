"""Signing keys: kinds, key ids, PEM round trips, file modes and load errors."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from invsync.agent.errors import KeyLoadError
from invsync.agent.exchange import keys
from tests.paths import SECOM_JPRS


@pytest.fixture(scope="module")
def ed(all_keys: dict[str, keys.SigningKey]) -> keys.SigningKey:
    return all_keys["ed25519"]


@pytest.mark.parametrize("kind", keys.KINDS)
def test_sign_verify_each_kind(all_keys: dict[str, keys.SigningKey], kind: str) -> None:
    key = all_keys[kind]
    sig = key.sign(b"inventory")
    assert key.kind == kind
    assert key.public.verify(sig, b"inventory")
    assert not key.public.verify(sig, b"inventory!")
    assert not key.public.verify(b"not a signature", b"inventory")


def test_ecdsa_uses_the_curves_hash(all_keys: dict[str, keys.SigningKey]) -> None:
    # A P-384 signature made with SHA-256 must not verify: the curve fixes the hash.
    key = all_keys["ecdsa-p384"]
    raw = serialization.load_pem_private_key(key.private_pem(), None)
    assert isinstance(raw, ec.EllipticCurvePrivateKey)
    sha256_sig = raw.sign(b"data", ec.ECDSA(hashes.SHA256()))
    assert not key.public.verify(sha256_sig, b"data")


def test_keyid_is_sha256_of_spki_der(ed: keys.SigningKey) -> None:
    spki = serialization.load_pem_public_key(ed.public.public_pem()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ed.keyid == hashlib.sha256(spki).hexdigest()
    assert re.fullmatch("[0-9a-f]{64}", ed.keyid)
    assert ed.public.spki_der == spki


def test_spki_der_round_trip(all_keys: dict[str, keys.SigningKey]) -> None:
    for key in all_keys.values():
        assert keys.verify_key_from_spki_der(key.public.spki_der) == key.public


def test_spki_der_garbage_is_named() -> None:
    with pytest.raises(KeyLoadError, match="pinned key of 'jprs': not a DER SubjectPublicKeyInfo"):
        keys.verify_key_from_spki_der(b"\x30\x00", source="pinned key of 'jprs'")


def test_unknown_kind() -> None:
    with pytest.raises(KeyLoadError, match="unsupported key kind 'rsa'"):
        keys.generate("rsa")


def test_private_key_file_is_0600(tmp_path: Path, ed: keys.SigningKey) -> None:
    path = tmp_path / "party.key"
    keys.write_private_key(path, ed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.load_signing_key(path).keyid == ed.keyid


def test_private_key_file_is_never_overwritten(tmp_path: Path, ed: keys.SigningKey) -> None:
    path = tmp_path / "party.key"
    path.write_bytes(b"precious")
    with pytest.raises(KeyLoadError, match=re.escape(f"signing key {path}: already exists")):
        keys.write_private_key(path, ed)
    assert path.read_bytes() == b"precious"


@pytest.mark.parametrize("kind", keys.KINDS)
def test_passphrase_round_trip(
    tmp_path: Path, all_keys: dict[str, keys.SigningKey], kind: str
) -> None:
    path = tmp_path / "party.key"
    keys.write_private_key(path, all_keys[kind], passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert keys.load_signing_key(path, b"correct horse").keyid == all_keys[kind].keyid


def test_wrong_passphrase(tmp_path: Path, ed: keys.SigningKey) -> None:
    path = tmp_path / "party.key"
    keys.write_private_key(path, ed, passphrase=b"right")
    with pytest.raises(KeyLoadError, match=re.escape(f"signing key {path}: wrong passphrase")):
        keys.load_signing_key(path, b"wrong")


def test_missing_passphrase(tmp_path: Path, ed: keys.SigningKey) -> None:
    path = tmp_path / "party.key"
    keys.write_private_key(path, ed, passphrase=b"right")
    with pytest.raises(
        KeyLoadError, match=re.escape(f"signing key {path}: is encrypted; a passphrase")
    ):
        keys.load_signing_key(path)


def test_rsa_rejected(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(
        KeyLoadError, match=re.escape(f"signing key {path}: RSA keys are not allowed")
    ):
        keys.load_signing_key(path)


def test_p521_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p521.pub"
    pub = ec.generate_private_key(ec.SECP521R1()).public_key()
    path.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(
        KeyLoadError, match=re.escape(f"public key {path}: ECDSA on secp521r1 is not")
    ):
        keys.load_verify_key(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(KeyLoadError, match=re.escape(f"signing key {path}: cannot read")):
        keys.load_signing_key(path)


def test_not_pem(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    path.write_bytes(b"hello")
    with pytest.raises(KeyLoadError, match=re.escape(f"signing key {path}: not a PEM file")):
        keys.load_signing_key(path)


def test_public_key_round_trip(tmp_path: Path, all_keys: dict[str, keys.SigningKey]) -> None:
    for kind, key in all_keys.items():
        path = tmp_path / f"{kind}.pub"
        path.write_bytes(key.public.public_pem())
        assert keys.load_verify_key(path) == key.public


def test_certificate_is_not_a_public_key(tmp_path: Path) -> None:
    fixture = SECOM_JPRS / "individual"
    path = fixture / "Security_Communication_RootCA2.pem"
    with pytest.raises(KeyLoadError, match="is a certificate, not a PEM public key"):
        keys.load_verify_key(path)


def test_repr_shows_no_key_material(ed: keys.SigningKey) -> None:
    assert repr(ed) == f"SigningKey(ed25519, keyid={ed.keyid})"
