"""Line-oriented sources read in pieces (issue 12, item 6): the same records as the whole text
gives, line numbers as `str.splitlines` counts them, a bad byte naming its line, the size cap and
file-type checks of `read_bytes`, and memory bounded by what is kept rather than the file."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import CertRecord
from invsync.agent.sources import pem_scan, reading, tabular
from invsync.agent.sources.csv_log import load_csv_log
from invsync.agent.sources.ct import load_ct_entries
from invsync.agent.sources.issuance_log import load_issuance_log, log_record
from invsync.agent.sources.lines import CSV_BREAKS, STR_BREAKS, decoded_lines
from invsync.agent.sources.pem import load_pem_file, pem_certificates
from invsync.agent.sources.reading import open_lines, source_size_cap
from invsync.agent.sources.registry import load_source
from invsync.agent.sources.tabular import csv_header, open_table
from tests import ct_helpers as ct
from tests.paths import DEMO, FIXTURES, SECOM_JPRS

NOW = datetime(2021, 3, 1, tzinfo=UTC)
DEMO_LOG = DEMO / "secom_issuance_log.jsonl"
ROOT_CA2_PEM = SECOM_JPRS / "individual" / "Security_Communication_RootCA2.pem"
PEM_FILES = sorted([*SECOM_JPRS.rglob("*.pem"), *DEMO.glob("*.pem")])
CSV_FILES = sorted([*FIXTURES.glob("*/*.csv"), *(FIXTURES / "ccadb" / "pems").glob("*.csv.gz")])
# Every CSV fixture in the real chunk size; the smaller ones in 7-byte chunks too (slow).
CSV_CASES = [
    *((path, None) for path in CSV_FILES),
    *((path, 7) for path in CSV_FILES if path.stat().st_size < 40_000),
]
BREAKS = {"str": STR_BREAKS, "csv": CSV_BREAKS}


def _fails(message: str, read: Callable[[], object]) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        read()


@pytest.fixture(params=[None, 7], ids=["default-chunks", "7-byte-chunks"])
def chunk_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Each test reads with the real chunk size, and again with chunks so small that lines,
    UTF-8 sequences, `\\r\\n` pairs and gzip's header are cut across them."""
    return _use_chunks(monkeypatch, request.param)


def _use_chunks(monkeypatch: pytest.MonkeyPatch, size: int | None) -> int:
    if size is not None:
        monkeypatch.setattr(reading, "CHUNK_BYTES", size)
        monkeypatch.setattr(tabular, "CHUNK_BYTES", size)
        monkeypatch.setattr(pem_scan, "_READ_BYTES", size)  # a plain PEM bundle's reader
    return size or reading.CHUNK_BYTES


# --- sources.lines: the same lines as the whole text, however the bytes are cut

TEXT = st.text(st.sampled_from(["a", "é", "日", " ", "\n", "\r", "\x1c", "\u2028", "\x85"]))


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in pairwise(edges)]


@pytest.mark.parametrize("name", sorted(BREAKS))
@given(text=TEXT, points=st.lists(st.integers(min_value=0), max_size=12))
def test_lines_are_the_whole_texts_however_the_bytes_are_cut(
    name: str, text: str, points: list[int]
) -> None:
    breaks = BREAKS[name]
    chunks = _cut(text.encode(), points)
    assert list(decoded_lines(chunks, "t", breaks=breaks)) == breaks.split(text)


@pytest.mark.parametrize("name", sorted(BREAKS))
@given(before=TEXT, after=TEXT, points=st.lists(st.integers(min_value=0), max_size=12))
def test_a_bad_byte_names_its_line_after_the_lines_before_it(
    name: str, before: str, after: str, points: list[int]
) -> None:
    breaks = BREAKS[name]
    whole = breaks.split(before)
    ended = [line for line in whole if line[-1] in breaks.ends]
    line = len(ended) + 1  # the bad byte starts a line, or ends the one not ended yet
    read: list[str] = []
    chunks = _cut(before.encode() + b"\xff" + after.encode(), points)
    message = f"t: not UTF-8 text: line {line}: cannot decode byte 0xff (invalid start byte)"
    _fails(message, lambda: read.extend(decoded_lines(chunks, "t", breaks=breaks)))
    assert read == ended


def test_a_cut_multibyte_character_names_its_bytes() -> None:
    message = "t: not UTF-8 text: line 2: cannot decode bytes 0xe6 0x97 (unexpected end of data)"
    _fails(message, lambda: list(decoded_lines([b"a\n", b"\xe6", b"\x97"], "t")))


def test_replace_keeps_reading_past_bytes_that_are_not_utf8() -> None:
    assert list(decoded_lines([b"caf\xe9\n", b"ok"], "t", errors="replace")) == [
        "caf\ufffd\n",
        "ok",
    ]


# --- reading.open_lines: the checks of read_bytes, and the cap counted as the bytes come


def test_open_lines_numbers_lines_without_their_breaks(tmp_path: Path, chunk_bytes: int) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes("one\r\ntwo\rthree\u2028four\n\nsix".encode())
    with open_lines(path) as lines:
        assert list(lines) == [
            (1, "one"),
            (2, "two"),
            (3, "three"),
            (4, "four"),
            (5, ""),
            (6, "six"),
        ]


def test_open_lines_refuses_a_file_over_the_cap_before_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"x" * 101)

    def no_read(*args: object) -> int:
        raise AssertionError("an oversized file was read")

    monkeypatch.setattr(reading.SourceFile, "readinto", no_read)
    message = f"{path}: file is 101 bytes, larger than the source size cap of 100 bytes (raise it"
    with source_size_cap(100):
        _fails(message, lambda: open_lines(path).__enter__())


@pytest.mark.parametrize("kind", ["lines", "table"])
def test_a_file_that_grows_past_the_cap_while_it_is_read_is_refused(
    tmp_path: Path, kind: str, chunk_bytes: int
) -> None:
    path = tmp_path / "grows.csv"
    path.write_text("certificate\nrow 2\n")
    cap = path.stat().st_size
    message = f"{path}: file is {cap + 1} bytes, larger than the source size cap of {cap} bytes"
    with source_size_cap(cap):
        if kind == "lines":
            with open_lines(path) as lines:  # fstat passed: the file was within the cap
                _append(path, b"row 3\n")
                _fails(message, lambda: list(lines))
        else:
            with open_table(path) as table:
                _append(path, b"row 3\n")
                _fails(message, lambda: list(table.rows))


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_open_lines_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "log.jsonl"
    os.mkfifo(fifo)
    message = f"{fifo}: is a FIFO (named pipe), not a regular file; refusing to read it"
    _fails(message, lambda: open_lines(fifo).__enter__())


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "/dev/zero: is a character device"),
        ("{tmp}", "{tmp}: cannot read: Is a directory"),
        ("{tmp}/none.jsonl", "{tmp}/none.jsonl: cannot read: No such file or directory"),
    ],
)
def test_open_lines_refuses_what_read_bytes_refuses(
    tmp_path: Path, path: str, message: str
) -> None:
    target = Path(path.replace("{tmp}", str(tmp_path)))
    _fails(message.replace("{tmp}", str(tmp_path)), lambda: open_lines(target).__enter__())


def test_open_lines_reports_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text("{}\n")
    real_open = os.open

    def denied(name: object, *args: object, **kwargs: object) -> int:
        if Path(str(name)) == path:  # chmod 000 does not stop root, who runs the tests
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denied)
    _fails(f"{path}: cannot read: permission denied", lambda: open_lines(path).__enter__())


# --- the readers: the same records as the whole text gives, on the real fixtures


@pytest.mark.parametrize("path", PEM_FILES, ids=lambda p: p.name)
def test_pem_files_give_the_certificates_of_their_whole_text(path: Path, chunk_bytes: int) -> None:
    whole = pem_certificates(path.read_text(), lambda line: f"{path}:{line}")
    records = load_pem_file(path, NOW)
    assert [r.sha256 for r in records] == [info.sha256 for info in whole]
    assert records


def test_the_pem_fixtures_hold_the_certificates_they_held(chunk_bytes: int) -> None:
    counts = {p.name: len(load_pem_file(p, NOW)) for p in PEM_FILES if p.parent == SECOM_JPRS}
    assert counts == {
        "jprs_intermediates_all_generations.pem": 16,
        "secom_hierarchy_all_ccadb.pem": 185,
        "secom_roots_selfsigned.pem": 11,
    }


def _log_records_of_whole_text(path: Path) -> list[CertRecord]:
    lines = enumerate(path.read_text().splitlines(), 1)
    return [log_record(json.loads(text), f"{path}:{n}", NOW) for n, text in lines if text.strip()]


def test_the_demo_issuance_log_gives_the_records_of_its_whole_text(chunk_bytes: int) -> None:
    records = load_issuance_log(DEMO_LOG, NOW)
    assert records == _log_records_of_whole_text(DEMO_LOG)
    assert len(records) == 12


def test_an_issuance_log_with_crlf_and_blank_lines_keeps_its_line_numbers(
    tmp_path: Path, chunk_bytes: int
) -> None:
    path = tmp_path / "log.jsonl"
    lines = DEMO_LOG.read_text().splitlines()
    path.write_text("\r\n".join(["", *lines[:3], "   ", *lines[3:]]) + "\r\n", newline="")
    records = load_issuance_log(path, NOW)
    assert records == _log_records_of_whole_text(path)
    assert [r.sources[0].location for r in records[:4]] == [f"{path}:{n}" for n in (2, 3, 4, 6)]


def _csv_rows_of_whole_text(path: Path) -> list[tuple[int, list[str]]]:
    data = path.read_bytes()
    text = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, start = [], 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((start, cells))
        start = reader.line_num + 1
    return rows


@pytest.mark.parametrize(
    ("path", "chunks"), CSV_CASES, ids=[f"{p.name}-{c or 'default'}" for p, c in CSV_CASES]
)
def test_csv_files_give_the_rows_of_their_whole_text(
    path: Path, chunks: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_chunks(monkeypatch, chunks)
    (header_line, header), *rows = _csv_rows_of_whole_text(path)
    with open_table(path) as table:
        assert (table.header_location, table.header) == (
            f"{path}:{header_line}",
            tuple(cell.strip() for cell in header),
        )
        assert [(row.location, list(row.cells)) for row in table.rows] == [
            (f"{path}:{start}", cells) for start, cells in rows
        ]


def test_a_csv_issuance_log_gives_the_records_of_the_json_lines_one(
    tmp_path: Path, chunk_bytes: int
) -> None:
    entries = [json.loads(line) for line in DEMO_LOG.read_text().splitlines() if line.strip()]
    path = tmp_path / "log.csv.gz"
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["certificate", "operator", "lifecycle"])
    writer.writeheader()
    writer.writerows({name: entry.get(name, "") for name in writer.fieldnames} for entry in entries)
    path.write_bytes(gzip.compress(text.getvalue().encode()))
    facts = load_csv_log(path, SourceContext(now=NOW))
    expected = load_issuance_log(DEMO_LOG, NOW)
    assert [(r.sha256, r.operator, r.lifecycle) for r in facts.records] == [
        (r.sha256, r.operator, r.lifecycle) for r in expected
    ]


def test_ct_json_lines_give_the_same_entries_however_they_are_cut(
    tmp_path: Path, chunk_bytes: int
) -> None:
    entries = [ct.x509_entry(ct.der(cert)) for cert in ct.JPRS]
    responses = [{"entries": entries[:4]}, {"entries": []}, {"entries": entries[4:]}]
    path = tmp_path / "entries.json"
    path.write_text("\r\n".join(json.dumps(r) for r in responses) + "\r\n", newline="")
    calls: list[tuple[int, int | None]] = []
    ctx = SourceContext(
        now=NOW, party_ca_spkis=ct.SECOM_KEYS, progress=lambda d, t: calls.append((d, t))
    )
    facts = load_ct_entries(path, ctx)
    total = len(entries)
    assert calls == [(4, total), (4, total), (total, total)]
    assert len(facts.records) == total  # every JPRS intermediate is signed by a SECOM root
    assert [r.sources[0].location for r in facts.records] == [f"{path}#{i}" for i in range(total)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("null\n", '{path}: not a get-entries response (expected {"entries": [...]})'),
        ('\n\n{"entries": []}\n\n', None),
        ('{"entries":\n []}', None),
        (
            '{"entries": []}\n{"entries": [] ]\n',
            "{path}:2: invalid JSON: Expecting ',' delimiter at column 16",
        ),
        ('{"entries":\n [}\n', "{path}:1: invalid JSON: Expecting value at column 12"),
    ],
)
def test_a_ct_file_is_one_document_or_json_lines_as_before(
    tmp_path: Path, content: str, message: str | None, chunk_bytes: int
) -> None:
    path = tmp_path / "entries.json"
    path.write_text(content)
    ctx = SourceContext(now=NOW, party_ca_spkis=ct.SECOM_KEYS)
    if message is None:
        assert load_ct_entries(path, ctx).records == ()
    else:
        _fails(message.replace("{path}", str(path)), lambda: load_ct_entries(path, ctx))


# --- a byte that is not UTF-8 names the file and its line, in every line-oriented reader


def _log_with_bad_third_line(tmp_path: Path, name: str) -> Path:
    good = [line for line in DEMO_LOG.read_text().splitlines() if line.strip()]
    path = tmp_path / name
    path.write_bytes(("\n".join(good[:2]) + "\n").encode() + b'{"operator": "caf\xe9"}\n')
    return path


def test_a_json_lines_log_names_the_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = _log_with_bad_third_line(tmp_path, "log.jsonl")
    message = f"{path}: not UTF-8 text: line 3: cannot decode byte 0xe9 (invalid continuation byte)"
    _fails(message, lambda: load_source(str(path), NOW))


@pytest.mark.parametrize("name", ["log.csv", "log.csv.gz"])
def test_a_csv_log_names_the_line_that_is_not_utf8(tmp_path: Path, name: str) -> None:
    pem = ROOT_CA2_PEM.read_text()
    text = f'certificate,operator\r\n"{pem}",secom\r\n'.encode()
    data = text + b"x,caf\xe9\r\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    line = len(text.decode().splitlines()) + 1
    message = f"{path}: not UTF-8 text: line {line}: cannot decode byte 0xe9 (invalid continuation"
    _fails(message, lambda: load_source(f"issuance-log:{path}", NOW))


def test_ct_json_lines_name_the_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    path.write_bytes(b'{"entries": []}\n{"entries": []}\n{"entries": ["\xff"]}\n')
    ctx = SourceContext(now=NOW, party_ca_spkis=ct.SECOM_KEYS)
    message = f"{path}: not UTF-8 text: line 3: cannot decode byte 0xff (invalid start byte)"
    _fails(message, lambda: load_ct_entries(path, ctx))


def test_a_pem_bundle_still_reads_comments_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"# Subject: Soci\xe9t\xe9\n" + ROOT_CA2_PEM.read_bytes())
    assert len(load_pem_file(path, NOW)) == 1


# --- bounded memory: what a reader holds is what it keeps, not the file

PADDING_BYTES = 4 * 1024 * 1024
HELD_BYTES = 1024 * 1024  # far below the 8 MiB that the file's bytes and text together take


def _peak(read: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _padded(path: Path, first: bytes, filler: bytes) -> Path:
    with path.open("wb") as f:
        f.write(first)
        for _ in range(PADDING_BYTES // len(filler)):
            f.write(filler)
    return path


def test_a_pem_bundle_is_read_in_bounded_memory(tmp_path: Path) -> None:
    comment = b"# " + b"a comment between blocks, ignored " * 2 + b"\n"
    path = _padded(tmp_path / "bundle.pem", ROOT_CA2_PEM.read_bytes(), comment)
    assert _peak(lambda: load_pem_file(path, NOW)) < HELD_BYTES


def test_a_json_lines_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    first = DEMO_LOG.read_bytes().splitlines(keepends=True)[0]
    path = _padded(tmp_path / "log.jsonl", first, b" " * 70 + b"\n")
    assert _peak(lambda: load_issuance_log(path, NOW)) < HELD_BYTES


def test_a_csv_log_is_read_in_bounded_memory(tmp_path: Path) -> None:
    first = b"certificate,operator\n" + f'"{ROOT_CA2_PEM.read_text()}",secom\n'.encode()
    path = _padded(tmp_path / "log.csv", first, b"," * 70 + b"\n")
    assert _peak(lambda: load_csv_log(path, SourceContext(now=NOW))) < HELD_BYTES


def test_ct_json_lines_are_read_in_bounded_memory(tmp_path: Path) -> None:
    path = _padded(tmp_path / "entries.json", b"", b'{"entries": []}' + b" " * 60 + b"\n")
    ctx = SourceContext(now=NOW, party_ca_spkis=ct.SECOM_KEYS)
    assert _peak(lambda: load_ct_entries(path, ctx)) < HELD_BYTES


# --- a table left early closes its file


def _open_files() -> Iterator[str]:
    fds = Path("/proc/self/fd")
    for fd in fds.iterdir():
        try:
            yield os.readlink(fd)
        except OSError:  # the descriptor of the listing itself is gone by now
            continue


def test_a_table_left_early_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    shutil.copy(FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv", path)
    assert csv_header(path)
    with open_table(path) as table:
        next(table.rows)
        assert str(path) in set(_open_files())
    assert str(path) not in set(_open_files())
