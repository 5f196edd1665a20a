"""Pairing scope on the real SECOM hierarchy: by signature, never by name."""

from __future__ import annotations

import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.inventory import scope
from invsync.agent.inventory.scope import root_scope, subordinate_scope
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.signatures import signed_by
from tests.paths import SECOM_JPRS

# Three real SECOM roots (RootCA1, RootCA2, EV RootCA1) have serial 0, which cryptography warns
# about; record.py meets the same certificates and owns that question.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

FIXTURES = SECOM_JPRS
JPRS_O = "Japan Registry Services Co., Ltd."


def _records(name: str) -> list[CertRecord]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Parsed a serial number")
        certs = x509.load_pem_x509_certificates((FIXTURES / name).read_bytes())
        return [CertRecord(parse_certificate(c.public_bytes(Encoding.DER))) for c in certs]


ROOTS = _records("secom_roots_selfsigned.pem")
HIERARCHY = _records("secom_hierarchy_all_ccadb.pem")
JPRS = _records("jprs_intermediates_all_generations.pem")
SECOM_KEYS = [r.info.spki_der for r in ROOTS]


def _shas(records: list[CertRecord]) -> set[str]:
    return {r.sha256 for r in records}


def _unrelated_key() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_fixture_sizes() -> None:
    assert (len(ROOTS), len(HIERARCHY), len(JPRS)) == (11, 185, 16)


def test_root_scope_by_subject_organization_is_exactly_the_16_jprs_certificates() -> None:
    scoped = root_scope(
        HIERARCHY, issuer_spkis=SECOM_KEYS, subordinate="jprs", subject_organizations=[JPRS_O]
    )
    assert _shas(scoped) == _shas(JPRS), (_shas(scoped) - _shas(JPRS), _shas(JPRS) - _shas(scoped))
    assert len(scoped) == 16


def test_root_scope_by_operator_wins_over_the_subject() -> None:
    nii = [r.with_view(operator="jprs") for r in HIERARCHY if "NII" in r.info.subject]
    jprs_elsewhere = [r.with_view(operator="nii") for r in JPRS]
    scoped = root_scope(
        nii + jprs_elsewhere,
        issuer_spkis=SECOM_KEYS,
        subordinate="jprs",
        subject_organizations=[JPRS_O],
    )
    assert nii and _shas(scoped) == _shas(nii)


def test_root_scope_excludes_the_self_signed_roots() -> None:
    secom = root_scope(
        ROOTS,
        issuer_spkis=SECOM_KEYS,
        subordinate="secom",
        subject_organizations=["SECOM Trust Systems CO.,LTD.", "SECOM Trust Systems Co., Ltd."],
    )
    assert secom == []


def test_root_scope_needs_the_signature_not_the_issuer_name() -> None:
    only_rsa_2024 = [r.info.spki_der for r in ROOTS if "TLS RSA Root CA 2024" in r.info.subject]
    scoped = root_scope(
        JPRS, issuer_spkis=only_rsa_2024, subordinate="jprs", subject_organizations=[JPRS_O]
    )
    assert {r.info.subject.split(",")[0] for r in scoped} == {
        "CN=JPRS DV RSA CA 2024 G1",
        "CN=JPRS OV RSA CA 2024 G1",
    }


def test_subordinate_scope_keeps_certificates_signed_by_secom_keys() -> None:
    assert _shas(subordinate_scope(JPRS, issuer_spkis=SECOM_KEYS)) == _shas(JPRS)


def test_subordinate_scope_excludes_self_signed_roots() -> None:
    scoped = subordinate_scope(HIERARCHY, issuer_spkis=SECOM_KEYS)
    assert _shas(scoped) == _shas(HIERARCHY) - _shas(ROOTS)
    assert subordinate_scope(ROOTS, issuer_spkis=SECOM_KEYS) == []


def test_subordinate_scope_with_an_unrelated_key_is_empty() -> None:
    assert subordinate_scope(JPRS, issuer_spkis=[_unrelated_key()]) == []


def test_subordinate_scope_keeps_input_order() -> None:
    reversed_jprs = JPRS[::-1]
    assert subordinate_scope(reversed_jprs, issuer_spkis=SECOM_KEYS) == reversed_jprs


def test_signed_by_rejects_a_key_of_another_algorithm() -> None:
    (jprs_ecc,) = [r for r in JPRS if "DV ECC CA 2024" in r.info.subject]
    cert = x509.load_der_x509_certificate(jprs_ecc.info.der)
    ecc_root = next(r for r in ROOTS if "ECC RootCA1" in r.info.subject)
    rsa_root = next(r for r in ROOTS if "RootCA2" in r.info.subject)
    assert signed_by(cert, x509.load_der_x509_certificate(ecc_root.info.der).public_key())
    assert not signed_by(cert, x509.load_der_x509_certificate(rsa_root.info.der).public_key())


def test_offline_scope_sets_aside_self_signed_roots_and_keeps_issued_ca_certificates() -> None:
    from invsync.agent.inventory.scope import issued_ca_certificates

    roots = _records("secom_roots_selfsigned.pem")
    issued = _records("jprs_intermediates_all_generations.pem")
    kept = issued_ca_certificates([*roots, *issued])
    assert {r.sha256 for r in kept} == {r.sha256 for r in issued}


def test_a_signature_checked_once_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13: a daemon builds every pairing's scope each cycle; the answer for a certificate
    and a key never changes, so the signature is checked once per (certificate, key)."""
    monkeypatch.setattr(scope, "_SIGNED", {})
    checks: list[str] = []

    def counted(cert: x509.Certificate, key: object) -> bool:
        checks.append(cert.fingerprint(hashes.SHA256()).hex())
        return signed_by(cert, key)  # type: ignore[arg-type]

    monkeypatch.setattr(scope, "signed_by", counted)
    first = subordinate_scope(JPRS, issuer_spkis=SECOM_KEYS)
    once = len(checks)
    assert subordinate_scope(JPRS, issuer_spkis=SECOM_KEYS) == first
    assert once > 0 and len(checks) == once  # the second build checked nothing again
