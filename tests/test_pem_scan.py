"""The fast PEM scan (`agent.sources.pem_scan`): the same DER as the line reader, or Irregular.

Its one promise: whatever it returns, the line reader of `agent.sources.pem` reads to exactly
the same certificates. So every file it does not vouch for raises Irregular, and the fuzz test
holds it to that promise on mutated real bundles.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from hypothesis import given

from invsync.agent.errors import SourceError
from invsync.agent.sources import pem_scan
from invsync.agent.sources.pem import pem_ders
from invsync.agent.sources.pem_scan import Irregular, ders_at, scan_pem
from invsync.agent.sources.reading import source_size_cap
from tests.fuzz.mutation import hostile
from tests.paths import SECOM_JPRS

BUNDLE = (SECOM_JPRS / "jprs_intermediates_all_generations.pem").read_bytes()


def _pem(der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"\n".join([b"-----BEGIN CERTIFICATE-----", *lines, b"-----END CERTIFICATE-----\n"])


def _line_reader(data: bytes) -> list[bytes]:
    return pem_ders(data.decode("utf-8", errors="replace"), lambda line: f"f.pem:{line}")


ONE = _pem(_line_reader(BUNDLE)[0])


def _scan(tmp_path: Path, data: bytes) -> list[bytes]:
    path = tmp_path / "bundle.pem"
    path.write_bytes(data)
    return [der for _, der in scan_pem(path)]


def test_a_real_bundle_scans_to_the_line_readers_certificates(tmp_path: Path) -> None:
    found = _scan(tmp_path, BUNDLE)
    assert len(found) == 16
    assert found == _line_reader(BUNDLE)


def test_spans_read_back_the_same_blocks_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_bytes(BUNDLE)
    scanned = list(scan_pem(path))
    spans = [span for span, _ in reversed(scanned)]
    assert list(ders_at(path, spans)) == [der for _, der in reversed(scanned)]


@pytest.mark.parametrize(
    "data",
    [
        b"# comment line\r\n" + ONE.replace(b"\n", b"\r\n") + b"trailing text\r\n",
        b"\n\n" + ONE + b"\n" + ONE,
        ONE.rstrip(b"\n"),  # no line break after the last END
        ONE.replace(b"\n-----END", b"\n\n-----END"),  # an empty line in the body
    ],
    ids=["crlf-and-comments", "blank-lines", "no-final-break", "empty-body-line"],
)
def test_what_the_scan_vouches_for_reads_the_same_by_lines(tmp_path: Path, data: bytes) -> None:
    found = _scan(tmp_path, data)
    assert found
    assert found == _line_reader(data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + ONE, "key block"),
        (b"  " + ONE, "indented armor"),
        (ONE.replace(b"CERTIFICATE-----\n", b"CERTIFICATE----- x\n", 1), "text after BEGIN"),
        (ONE.replace(b"-----END CERTIFICATE-----", b"-----END CERTIFICATE----- x"), "after END"),
        (ONE.replace(b"\nMII", b"\n MII", 1), "space in the body"),
        (b"\xef\xbb\xbf" + ONE, "byte order mark"),
        (ONE.replace(b"\n", b"\r"), "CR line breaks"),
        (ONE + b"-----BEGIN CERTIFICATE-----\nAAAA\n", "unterminated block"),
        (ONE.replace(b"\nMII", b"\nMII=", 1), "padding inside the body"),
        (b"# no certificate here\n", "no certificate"),
        (b"comment -----BEGIN CERTIFICATE-----\n", "armor inside a comment"),
        (ONE.replace(b"\n-----END", b"-----END"), "END after the last body line"),
        (
            ONE.replace(b"=\n-----END", b"=-----END").replace(b"\n-----END", b"=-----END"),
            "END after padding",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_anything_else_is_irregular(tmp_path: Path, data: bytes, why: str) -> None:
    with pytest.raises(Irregular):
        _scan(tmp_path, data)


def test_a_block_cut_by_a_read_boundary_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads of 7 bytes cut every armor and body line; the END line is read to its end before
    the block counts (text after END in the next read must still be refused)."""
    monkeypatch.setattr(pem_scan, "_READ_BYTES", 7)
    assert _scan(tmp_path, BUNDLE) == _line_reader(BUNDLE)
    cut_after_end = ONE.replace(b"-----END CERTIFICATE-----\n", b"-----END CERTIFICATE-----x\n")
    with pytest.raises(Irregular, match="END armor with text after it"):
        _scan(tmp_path, cut_after_end)


def test_a_long_stretch_without_a_block_is_irregular_not_rescanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block and the comment before it, longer together than the longest block allowed (4 KiB
    here, above ONE's length), are left to the line reader; shorter, they are read."""
    monkeypatch.setattr(pem_scan, "_READ_BYTES", 64)
    monkeypatch.setattr(pem_scan, "_LONGEST_BLOCK", 4096)
    assert len(ONE) < 4096
    assert _scan(tmp_path, b"# comment\n" * 100 + ONE) == _line_reader(ONE)
    with pytest.raises(Irregular, match="bytes without a certificate block"):
        _scan(tmp_path, b"# comment\n" * 500 + ONE)


def test_the_source_size_cap_applies(tmp_path: Path) -> None:
    with source_size_cap(100), pytest.raises(SourceError, match="larger than the source size cap"):
        _scan(tmp_path, BUNDLE)


def test_a_span_the_file_no_longer_holds_is_irregular(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_bytes(BUNDLE)
    spans = [span for span, _ in scan_pem(path)]
    path.write_bytes(b"#" * len(BUNDLE))
    with pytest.raises(Irregular, match=f"no certificate block at byte {spans[0][0]} any more"):
        list(ders_at(path, spans[:1]))


@given(data=hostile([BUNDLE[:6000], ONE]))
def test_fuzz_the_scan_returns_what_the_line_reader_reads_or_refuses(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        try:
            found = _scan(Path(folder), data)
        except Irregular:
            return
    assert found == _line_reader(data)


# The PEM cell of CCADB's report: one block alone in a text, read by `lone_block_der`.


def _cell(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    "data",
    [
        ONE,
        ONE.replace(b"\n", b"\r\n"),
        b"\n  " + ONE + b"\n\n",  # whitespace around the block, armor indented as lines strip
        ONE.replace(b"CERTIFICATE-----\n", b"CERTIFICATE-----  \n", 1),
        ONE.replace(b"\n-----END", b"\n\n-----END"),  # an empty line in the body
        ONE.rstrip(b"\n"),
    ],
    ids=["lf", "crlf", "around", "spaces-after-begin", "empty-body-line", "no-final-break"],
)
def test_a_lone_block_reads_as_the_line_reader_reads_it(data: bytes) -> None:
    lone = pem_scan.lone_block_der(_cell(data))
    assert lone is not None
    assert [lone] == _line_reader(data)


@pytest.mark.parametrize(
    "data",
    [
        b"# comment\n" + ONE,
        ONE + ONE,
        ONE.replace(b"\nMII", b"\n MII", 1),  # space in the body
        ONE.replace(b"\n", b"\r"),  # CR line breaks
        ONE.replace(b"\n-----END", b"-----END"),  # END after the last body line
        ONE.replace(b"\nMII", b"\nMII=", 1),  # padding inside the body
        ONE.replace(b"CERTIFICATE", b"X509 CRL"),
    ],
    ids=["comment", "two", "space", "cr", "end-on-body-line", "padding", "crl"],
)
def test_anything_else_is_left_to_the_line_reader(data: bytes) -> None:
    assert pem_scan.lone_block_der(_cell(data)) is None


@given(data=hostile([ONE, ONE.replace(b"\n", b"\r\n"), b" \n" + ONE + b"\n"]))
def test_fuzz_a_lone_block_is_what_the_line_reader_reads(data: bytes) -> None:
    text = _cell(data)
    lone = pem_scan.lone_block_der(text)
    if lone is None:
        return
    assert [lone] == pem_ders(text, lambda line: f"cell:{line}")
