"""PEM, DER and directory sources, on the real SECOM/JPRS certificates."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from invsync.agent.errors import SourceError
from invsync.agent.model.record import SourceRef
from invsync.agent.sources import pem
from invsync.agent.sources.registry import load_source
from tests.ct_helpers import JPRS_SHA256
from tests.paths import SECOM_JPRS

FIXTURES = SECOM_JPRS
JPRS_BUNDLE = FIXTURES / "jprs_intermediates_all_generations.pem"
INDIVIDUAL = FIXTURES / "individual"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
BUG_OV_PEM = INDIVIDUAL / "JPRS_OV_G3_bug1695993_21C06633.pem"
ROOT_CA2_PEM = INDIVIDUAL / "Security_Communication_RootCA2.pem"
NOW = datetime(2021, 3, 1, tzinfo=UTC)


def _der(pem_path: Path) -> bytes:
    # Converted with cryptography itself, so the test does not lean on the code under test.
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


def _lines_until(text: str, marker: str, occurrence: int) -> int:
    """The 1-based line number of the `occurrence`-th line starting with `marker`."""
    starts = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(marker)]
    return starts[occurrence - 1]


def test_bundle_gives_the_16_jprs_certificates() -> None:
    records = load_source(str(JPRS_BUNDLE), NOW)
    assert len(records) == 16
    assert {r.sha256 for r in records} == JPRS_SHA256
    assert [r.sha256 for r in records] == sorted(JPRS_SHA256)


def test_bug_1695993_certificates_have_9_byte_serials() -> None:
    by_sha = {r.sha256: r for r in load_source(str(JPRS_BUNDLE), NOW)}
    ov, dv = by_sha[BUG_OV].info, by_sha[BUG_DV].info
    assert (ov.serial_hex, dv.serial_hex) == ("22B9B172FA931A5B74", "22B9B174E5DA7D6EEB")
    assert ov.serial_bytes == dv.serial_bytes == 9
    assert ov.is_ca and dv.is_ca
    assert ov.not_before == datetime(2020, 7, 10, 4, 48, 56, tzinfo=UTC)


def test_pem_records_name_their_file_and_carry_no_view() -> None:
    record = load_source(str(BUG_OV_PEM), NOW)[0]
    assert record.sources == (SourceRef("pem", str(BUG_OV_PEM), NOW, NOW),)
    assert (record.operator, record.lifecycle, record.revocation) == (None, None, None)


def test_der_file(tmp_path: Path) -> None:
    path = tmp_path / "bug_ov.der"
    path.write_bytes(_der(BUG_OV_PEM))
    [record] = load_source(str(path), NOW)
    assert record.sha256 == BUG_OV
    assert record.sources[0].kind == "der"


@pytest.mark.parametrize("name", ["ca.crt", "ca.cer", "ca.der", "ca.bin"])
def test_der_content_is_sniffed_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_der(BUG_OV_PEM))
    assert [r.sources[0].kind for r in load_source(str(path), NOW)] == ["der"]


@pytest.mark.parametrize("name", ["ca.crt", "ca.cer", "ca.der", "bundle"])
def test_pem_content_is_sniffed_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    shutil.copy(JPRS_BUNDLE, path)
    records = load_source(str(path), NOW)
    assert len(records) == 16
    assert {r.sources[0].kind for r in records} == {"pem"}


def test_directory_is_read_recursively_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "roots" / "old").mkdir(parents=True)
    shutil.copy(ROOT_CA2_PEM, tmp_path / "roots" / "RootCA2.pem")
    (tmp_path / "roots" / "old" / "bug.der").write_bytes(_der(BUG_OV_PEM))
    (tmp_path / "README.md").write_text("not a certificate\n")
    (tmp_path / "roots" / "key.txt").write_text("-----BEGIN PRIVATE KEY-----\n")
    records = load_source(str(tmp_path), NOW)
    locations = sorted(ref.location for r in records for ref in r.sources)
    assert locations == [
        str(tmp_path / "roots" / "RootCA2.pem"),
        str(tmp_path / "roots/old/bug.der"),
    ]
    assert BUG_OV in {r.sha256 for r in records}


def test_directory_of_the_individual_fixtures() -> None:
    records = load_source(str(INDIVIDUAL), NOW)
    assert len(records) == 10
    assert {BUG_OV, BUG_DV} <= {r.sha256 for r in records}


def test_kind_prefix_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "bundle.txt"
    shutil.copy(JPRS_BUNDLE, path)
    assert len(load_source(f"pem:{path}", NOW)) == 16
    with pytest.raises(SourceError, match=re.escape(f"{path}: not a DER certificate: ")):
        load_source(f"der:{path}", NOW)


def test_unknown_prefix_is_part_of_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(BUG_OV_PEM, tmp_path / "x509:ca.pem")
    [record] = load_source("x509:ca.pem", NOW)
    assert record.sources[0].location == "x509:ca.pem"


def test_dir_prefix_on_a_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=re.escape(f"{BUG_OV_PEM}: not a directory")):
        load_source(f"dir:{BUG_OV_PEM}", NOW)


def test_truncated_base64_names_file_and_line_of_its_block(tmp_path: Path) -> None:
    good, bad = ROOT_CA2_PEM.read_text(), BUG_OV_PEM.read_text().splitlines()
    body_start = bad.index("-----BEGIN CERTIFICATE-----") + 1
    del bad[body_start + 5 : body_start + 15]  # ten whole lines: valid base64, cut DER
    text = good + "\n".join(bad) + "\n"
    path = tmp_path / "bad.pem"
    path.write_text(text)
    line = _lines_until(text, "-----BEGIN CERTIFICATE-----", 2)
    assert line > 1
    with pytest.raises(
        SourceError, match=re.escape(f"{path}:{line}: certificate 2 cannot be parsed: ")
    ):
        load_source(str(path), NOW)


def test_bad_base64_padding_is_named(tmp_path: Path) -> None:
    lines = BUG_OV_PEM.read_text().splitlines()
    end = lines.index("-----END CERTIFICATE-----")
    lines[end - 1] = lines[end - 1][:-3]
    path = tmp_path / "bad.pem"
    path.write_text("\n".join(lines) + "\n")
    line = _lines_until(path.read_text(), "-----BEGIN CERTIFICATE-----", 1)
    expected = f"{path}:{line}: certificate 1 cannot be parsed: invalid base64 ("
    with pytest.raises(SourceError, match=re.escape(expected)):
        load_source(str(path), NOW)


def test_private_key_block_is_refused(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    text = BUG_OV_PEM.read_text() + key.decode()
    path = tmp_path / "with_key.pem"
    path.write_text(text)
    line = _lines_until(text, "-----BEGIN PRIVATE KEY-----", 1)
    expected = f"{path}:{line}: PEM block 'PRIVATE KEY' is not a certificate"
    with pytest.raises(SourceError, match=re.escape(expected)):
        load_source(str(path), NOW)


def test_block_without_end_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.pem"
    path.write_text("\n".join(BUG_OV_PEM.read_text().splitlines()[:-1]) + "\n")
    line = _lines_until(path.read_text(), "-----BEGIN CERTIFICATE-----", 1)
    with pytest.raises(
        SourceError, match=re.escape(f"{path}:{line}: BEGIN CERTIFICATE has no END line")
    ):
        load_source(str(path), NOW)


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_pem_file_without_certificate_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.pem"
    path.write_text(content)
    with pytest.raises(SourceError, match=re.escape(f"{path}: no certificate found")):
        load_source(str(path), NOW)


def test_empty_der_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.der"
    path.write_bytes(b"")
    with pytest.raises(
        SourceError, match=re.escape(f"{path}: file is empty, no certificate found")
    ):
        load_source(str(path), NOW)


def test_garbage_der_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.cer"
    path.write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(SourceError, match=re.escape(f"{path}: not a DER certificate: ")) as info:
        load_source(str(path), NOW)
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("name", ["missing.pem", "missing.crt", "missing"])
def test_missing_file_is_an_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(
        SourceError, match=re.escape(f"{path}: cannot read: No such file or directory")
    ) as info:
        load_source(str(path), NOW)
    assert isinstance(info.value.__cause__, OSError)


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(
        SourceError, match=re.escape(f"{tmp_path}: directory holds no certificate files")
    ):
        load_source(str(tmp_path), NOW)


def test_bad_file_in_a_directory_is_named(tmp_path: Path) -> None:
    shutil.copy(ROOT_CA2_PEM, tmp_path / "a.pem")
    (tmp_path / "b.crt").write_bytes(b"not DER")
    with pytest.raises(
        SourceError, match=re.escape(f"{tmp_path / 'b.crt'}: not a DER certificate")
    ):
        load_source(str(tmp_path), NOW)


def test_a_plain_bundle_is_read_by_the_fast_scan_not_line_by_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    expected = [r.sha256 for r in load_source(str(JPRS_BUNDLE), NOW)]

    def no_lines(*args: object, **kwargs: object) -> None:
        raise AssertionError("the line reader was used")

    monkeypatch.setattr(pem, "open_lines", no_lines)
    assert [r.sha256 for r in load_source(str(JPRS_BUNDLE), NOW)] == expected
    assert len(expected) == 16


def test_a_bundle_the_scan_refuses_reads_the_same_line_by_line(tmp_path: Path) -> None:
    """Indented armor and CR-only line breaks: the line reader strips and splits them."""
    expected = [r.sha256 for r in load_source(str(JPRS_BUNDLE), NOW)]
    text = JPRS_BUNDLE.read_text()
    for name, changed in (
        ("indented.pem", text.replace("-----BEGIN", "  -----BEGIN")),
        ("cr.pem", text.replace("\n", "\r")),
    ):
        path = tmp_path / name
        path.write_text(changed, newline="")
        assert [r.sha256 for r in load_source(str(path), NOW)] == expected, name
