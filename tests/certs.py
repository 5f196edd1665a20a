"""The real certificates under tests/fixtures/secom_jprs, parsed, and their encodings."""

from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.model.record import CertInfo, parse_certificate
from tests.paths import SECOM_JPRS


def cert_infos(name: str) -> list[CertInfo]:
    """Every certificate of the PEM file `name` in tests/fixtures/secom_jprs, in file order."""
    certs = x509.load_pem_x509_certificates((SECOM_JPRS / name).read_bytes())
    return [parse_certificate(c.public_bytes(Encoding.DER)) for c in certs]


def b64_der(pem: str) -> str:
    """A PEM certificate as base64 DER, one of the forms a log row may carry it in."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()
