"""The DER reader agrees with `cryptography` on real certificates: the fallback basicConstraints
reader, and the parts sliced from a certificate (more of them in test_by_fingerprint.py)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.model.der import basic_constraints, certificate_parts
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
    assert parts.spki == cert.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )
    # Slices of the DER, each found at the place the TBSCertificate holds it.
    assert der.find(parts.tbs) == 4 and parts.tbs.find(parts.spki) > parts.tbs.find(parts.subject)


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
