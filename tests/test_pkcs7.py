"""PKCS#7 bundles built from the real SECOM/JPRS certificates, PEM and DER."""

from __future__ import annotations

import base64
import csv
import gzip
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import SourceRef
from invsync.agent.sources.pkcs7 import load_pkcs7
from tests.paths import FIXTURES

JPRS_BUNDLE = FIXTURES / "secom_jprs" / "jprs_intermediates_all_generations.pem"
# A real CCADB certificate that loads, but whose name constraints `cryptography` refuses.
HOST_BITS_SET = "01FD614879394B3AE149252FC15698674159CE5550669FF912892E19835A1E4C"
HOST_BITS_REPORT = (
    FIXTURES / "ccadb" / "pems" / "AllCertificatePEMsCSVFormat_NotBeforeYear_2014.csv.gz"
)
NOW = datetime(2021, 3, 1, tzinfo=UTC)
CTX = SourceContext(now=NOW)
PEM, DER = serialization.Encoding.PEM, serialization.Encoding.DER

# A well-formed "certs-only" SignedData without a single certificate (DER ContentInfo).
EMPTY_BUNDLE = bytes.fromhex(
    "302306092a864886f70d010702a01630140201013100300b06092a864886f70d0107013100"
)


def _jprs() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(JPRS_BUNDLE.read_bytes())


def _sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex().upper()


def _host_bits_set() -> x509.Certificate:
    with gzip.open(HOST_BITS_REPORT, "rt", encoding="utf-8", newline="") as report:
        pem = next(row[1] for row in csv.reader(report) if row[0] == HOST_BITS_SET)
    return x509.load_pem_x509_certificate(pem.replace("\n\n", "\n").encode())


def _write(tmp_path: Path, data: bytes, name: str = "bundle.p7b") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _bundle(
    tmp_path: Path, certs: list[x509.Certificate], encoding: serialization.Encoding
) -> Path:
    return _write(tmp_path, pkcs7.serialize_certificates(certs, encoding))


def _armor(der: bytes, label: str = "PKCS7") -> bytes:
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _fails(path: Path, message: str) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load_pkcs7(path, CTX)


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_every_certificate_of_a_bundle_in_order(
    tmp_path: Path, encoding: serialization.Encoding
) -> None:
    certs = _jprs()
    path = _bundle(tmp_path, certs, encoding)
    facts = load_pkcs7(path, CTX)
    # DER sorts a SET OF, so the bundle's order is not the list's: compare as sets, then order.
    assert {r.sha256 for r in facts.records} == {_sha256(c) for c in certs}
    assert len(facts.records) == 16
    in_bundle = pkcs7.load_der_pkcs7_certificates(pkcs7.serialize_certificates(certs, DER))
    assert [r.sha256 for r in facts.records] == [_sha256(c) for c in in_bundle]
    assert facts.records[0].sources == (SourceRef("pkcs7", str(path), NOW, NOW),)
    assert facts.skipped == ()


def test_rfc_7468_label_pkcs_7_signed_data(tmp_path: Path) -> None:
    der = pkcs7.serialize_certificates(_jprs()[:2], DER)
    facts = load_pkcs7(_write(tmp_path, _armor(der, "PKCS #7 SIGNED DATA")), CTX)
    assert {r.sha256 for r in facts.records} == {_sha256(c) for c in _jprs()[:2]}


def test_progress_is_reported_at_the_end(tmp_path: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    path = _bundle(tmp_path, _jprs(), DER)
    load_pkcs7(path, SourceContext(now=NOW, progress=lambda d, t: calls.append((d, t))))
    assert calls == [(16, 16)]


def test_truncated_der_bundle_names_the_file(tmp_path: Path) -> None:
    der = pkcs7.serialize_certificates(_jprs(), DER)
    path = _write(tmp_path, der[: len(der) // 2])
    _fails(path, f"{path}: not a PKCS#7 certificate bundle: Unable to parse PKCS7 data")


def test_corrupt_pem_bundle_names_the_file(tmp_path: Path) -> None:
    armored = pkcs7.serialize_certificates(_jprs(), PEM).replace(b"M", b"!", 1)
    path = _write(tmp_path, armored)
    _fails(path, f"{path}: not a PKCS#7 certificate bundle: ")


def test_a_certificate_file_is_not_a_bundle(tmp_path: Path) -> None:
    path = _write(tmp_path, JPRS_BUNDLE.read_bytes())
    _fails(path, f"{path}: not a PKCS#7 certificate bundle: The provided PEM data does not have")


@pytest.mark.parametrize("data", [EMPTY_BUNDLE, _armor(EMPTY_BUNDLE)], ids=["der", "pem"])
def test_empty_bundle_is_an_error(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path, data)
    _fails(path, f"{path}: PKCS#7 bundle holds no certificate")


def test_missing_bundle(tmp_path: Path) -> None:
    _fails(tmp_path / "gone.p7b", f"{tmp_path / 'gone.p7b'}: cannot read: No such file")


def _with_bad_time(tmp_path: Path) -> Path:
    """A bundle of two real certificates whose second one's notBefore is no longer a UTCTime:
    the same length, so the PKCS#7 structure stays valid while `cryptography` refuses the
    certificate itself."""
    good, other = _jprs()[0], _jprs()[1]
    data = pkcs7.serialize_certificates([good, other], DER)
    other_der = other.public_bytes(DER)
    stamp = other.not_valid_before_utc.strftime("%y%m%d%H%M%SZ").encode()
    assert other_der.count(stamp) == 1
    broken = other_der.replace(stamp, b"x" + stamp[1:])
    assert data.count(other_der) == 1
    return _write(tmp_path, data.replace(other_der, broken))


def test_a_broken_certificate_makes_the_bundle_unreadable_and_names_the_file(
    tmp_path: Path,
) -> None:
    # cryptography parses a PKCS#7 bundle whole, so even --skip-invalid cannot keep the rest.
    path = _with_bad_time(tmp_path)
    expected = rf"^{re.escape(str(path))}: not a PKCS#7 certificate bundle: .*UtcTime"
    for ctx in (CTX, SourceContext(now=NOW, skip_invalid=True)):
        with pytest.raises(SourceError, match=expected):
            load_pkcs7(path, ctx)


def test_a_certificate_with_undecodable_extensions_is_kept_and_says_why(tmp_path: Path) -> None:
    # Real CCADB certificate: cryptography refuses its name constraints, not the certificate.
    cert = _host_bits_set()
    assert _sha256(cert) == HOST_BITS_SET
    with pytest.raises(ValueError, match="host bits set"):
        _ = cert.extensions
    facts = load_pkcs7(_bundle(tmp_path, [cert], DER), CTX)
    (record,) = facts.records
    assert record.info.extensions_error == "81.27.169.51/24 has host bits set"
    assert record.info.is_ca


def test_a_bundle_that_is_not_der_is_read_as_ber_and_said_so_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = x509.load_pem_x509_certificates(JPRS_BUNDLE.read_bytes())[:2]
    path = tmp_path / "trailing.p7b"
    path.write_bytes(pkcs7.serialize_certificates(certs, serialization.Encoding.DER) + b"\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no foreign warning escapes the reader
        facts = load_pkcs7(path, CTX)
    assert len(facts.records) == 2
    assert f"{path}: PKCS#7 bundle is not DER, read as BER" in caplog.text


def test_an_armored_bundle_that_is_not_der_is_said_so_by_name_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = x509.load_pem_x509_certificates(JPRS_BUNDLE.read_bytes())[:1]
    der = pkcs7.serialize_certificates(certs, serialization.Encoding.DER) + b"\x00"
    body = base64.encodebytes(der).decode()
    path = tmp_path / "trailing.p7c"
    path.write_text(f"-----BEGIN PKCS7-----\n{body}-----END PKCS7-----\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_pkcs7(path, CTX).records) == 1
    assert f"{path}: PKCS#7 bundle is not DER, read as BER" in caplog.text
