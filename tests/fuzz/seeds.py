"""Real seed inputs for the fuzz tests, read from tests/fixtures and agent/demo_data, trimmed to a
few records each so that one input takes milliseconds."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from tests import ct_helpers as ct

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
DEMO = ROOT / "agent" / "demo_data"
INDIVIDUAL = sorted((FIXTURES / "secom_jprs" / "individual").glob("*.pem"))
CERTS = [x509.load_pem_x509_certificate(p.read_bytes()) for p in INDIVIDUAL]
DERS = [c.public_bytes(serialization.Encoding.DER) for c in CERTS]


def _crl() -> tuple[bytes, bytes, bytes]:
    """A CRL signed by a throwaway CA (its certificate DER first), so that the whole reader runs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz CA")])
    when = datetime(2021, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(when)
        .not_valid_after(when + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    revoked = x509.RevokedCertificateBuilder().serial_number(7).revocation_date(when).build()
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(when)
        .next_update(when + timedelta(days=30))
        .add_revoked_certificate(revoked)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.DER),
        crl.public_bytes(serialization.Encoding.DER),
        crl.public_bytes(serialization.Encoding.PEM),
    )


CRL_CA, CRL_DER, CRL_PEM = _crl()


def _head(path: Path, lines: int) -> bytes:
    return b"\n".join(path.read_bytes().split(b"\n")[:lines]) + b"\n"


def _pkcs7(encoding: serialization.Encoding) -> bytes:
    return pkcs7.serialize_certificates(CERTS[:3], encoding)


def _csv_log() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["certificate", "operator", "lifecycle"])
    for path, life in zip(INDIVIDUAL[:3], ["in-use", "unused", "decommissioned"], strict=True):
        writer.writerow([path.read_text(), "jprs", life])
    return out.getvalue().encode()


def _ccadb_pems() -> bytes:
    data = gzip.decompress(
        (
            FIXTURES / "ccadb" / "pems" / "AllCertificatePEMsCSVFormat_NotBeforeYear_1994.csv.gz"
        ).read_bytes()
    )
    rows = list(csv.reader(io.StringIO(data.decode())))[:4]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _ct() -> bytes:
    entries = [ct.x509_entry(der) for der in DERS[:3]]
    return json.dumps({"entries": entries}).encode()


def _jsonl() -> bytes:
    lines = (DEMO / "secom_issuance_log.jsonl").read_bytes().split(b"\n")[:3]
    extra = json.dumps({"certificate": base64.b64encode(DERS[0]).decode(), "operator": "jprs"})
    return b"\n".join([*lines, extra.encode()]) + b"\n"


def source_seeds() -> dict[str, tuple[str, list[bytes]]]:
    """kind -> (file suffix, seeds)."""
    return {
        "pem": (".pem", [p.read_bytes() for p in INDIVIDUAL[:4]]),
        "der": (".der", DERS[:4]),
        "pkcs7": (".p7b", [_pkcs7(serialization.Encoding.DER), _pkcs7(serialization.Encoding.PEM)]),
        "issuance-log": (".jsonl", [_jsonl()]),
        "issuance-log-csv": (".csv", [_csv_log()]),
        "ccadb": (
            ".csv",
            [_head(FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv", 4)],
        ),
        "ccadb-pems": (".csv", [_ccadb_pems()]),
        "audit-scope": (
            ".csv",
            [
                _head(
                    FIXTURES
                    / "audit"
                    / "sectigo_20220401_AllRootsAndIntermediatesForSectigoAudit.csv",
                    6,
                ),
            ],
        ),
        "audit-scope-text": (
            ".txt",
            [(DEMO / "jprs_audit_scope_webtrust_br_2020.txt").read_bytes()],
        ),
        "crl": (".crl", [CRL_DER, CRL_PEM]),
        "ct": (".json", [_ct()]),
    }
