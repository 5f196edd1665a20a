"""The DER reader agrees with `cryptography` on real certificates: the fallback basicConstraints
reader, and the parts sliced from a certificate (more of them in test_by_fingerprint.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from invsync.agent.model import record
from invsync.agent.model.der import basic_constraints, certificate_parts
from invsync.agent.model.record import sha256_hex
from tests.paths import SECOM_JPRS

FIXTURES = SECOM_JPRS


def _certs() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(
        (FIXTURES / "secom_hierarchy_all_ccadb.pem").read_bytes()
    )


def _expected(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def test_it_reads_what_cryptography_reads_on_185_real_certificates() -> None:
    certs = _certs()
    assert len(certs) == 185
    for cert in certs:
        assert basic_constraints(cert.tbs_certificate_bytes) == _expected(cert)


def test_path_lengths_are_read() -> None:
    lengths = {basic_constraints(c.tbs_certificate_bytes)[1] for c in _certs()}
    assert {None, 0} <= lengths


def test_truncated_der_is_refused() -> None:
    tbs = _certs()[0].tbs_certificate_bytes
    with pytest.raises(ValueError, match="truncated DER"):
        basic_constraints(tbs[: len(tbs) // 2])


def test_the_parts_are_sliced_from_the_certificate() -> None:
    cert = _certs()[0]
    der = cert.public_bytes(Encoding.DER)
    parts = certificate_parts(der)
    assert parts.tbs == cert.tbs_certificate_bytes
    assert parts.issuer == cert.issuer.public_bytes()
    assert parts.subject == cert.subject.public_bytes()
    # Slices of the DER, each found at the place the TBSCertificate holds it.
    assert der.find(parts.tbs) == 4 and parts.tbs.find(parts.subject) > parts.tbs.find(parts.issuer)


def _without_null_parameters(key: rsa.RSAPrivateKey) -> bytes:
    """A certificate whose RSA key's AlgorithmIdentifier has no NULL parameters: legal, loaded
    by `cryptography`, and written back with NULL when it is asked for the key's bytes."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "no NULL")])
    at = datetime(2024, 1, 1, tzinfo=UTC)
    der = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(at).not_valid_after(at + timedelta(days=1))
        .sign(key, hashes.SHA256()).public_bytes(Encoding.DER)
    )  # fmt: skip
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with_null = bytes.fromhex("300d06092a864886f70d0101010500")
    without = bytes.fromhex("300b06092a864886f70d010101")
    bits = spki[4 + len(with_null) :]
    bare = b"\x30\x82" + (len(without) + len(bits)).to_bytes(2, "big") + without + bits
    at_key = der.index(spki)
    tbs_length = int.from_bytes(der[6:8], "big") - 2  # both lengths in the 0x82 form
    body = b"\x30\x82" + tbs_length.to_bytes(2, "big") + der[8:at_key] + bare
    body += der[at_key + len(spki) :]
    return b"\x30\x82" + len(body).to_bytes(2, "big") + body


def test_the_key_is_what_cryptography_writes_not_a_slice() -> None:
    """A slice of the key would differ here (found by review): the key's hash and the
    doppelganger key stay what they were, on what `cryptography` writes."""
    der = _without_null_parameters(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    cert = x509.load_der_x509_certificate(der)
    written = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert written not in der  # cryptography added the NULL
    info = record._parse_certificate(der)
    assert info.spki_der == written
    assert info.tbs_sha256 == sha256_hex(cert.tbs_certificate_bytes)


@pytest.mark.parametrize(
    ("der", "message"),
    [
        (b"\x31\x00", "Certificate has tag 0x31, not 0x30"),
        (b"\x30\x03\x02\x01\x00", "TBSCertificate has tag 0x02, not 0x30"),
        (b"\x30\x02\x30\x00", "truncated DER"),
    ],
    ids=["not-a-sequence", "no-tbs", "empty-tbs"],
)
def test_a_certificate_of_another_shape_is_a_value_error(der: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        certificate_parts(der)
