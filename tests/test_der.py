"""The fallback basicConstraints reader agrees with `cryptography` on real certificates."""

from __future__ import annotations

import pytest
from cryptography import x509

from invsync.agent.model.der import basic_constraints
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
