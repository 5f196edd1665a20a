"""JSON Lines of CT responses read the fast way (agent.sources.ct_lines) give what the exact
reading gave (tests/ct_reference.py): the same responses, errors with the same line numbers,
and progress, whatever the file's line breaks, blank lines, text and mistakes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.model.bundle import SourceContext
from invsync.agent.sources.ct_lines import PlainLines
from tests import ct_helpers as enc
from tests.ct_helpers import JPRS, SECOM_KEYS, der
from tests.ct_reference import both
from tests.test_ct import NOW

CTX = SourceContext(now=NOW, party_ca_spkis=SECOM_KEYS, skip_invalid=True)
EMPTY = '{"entries": []}'
ONE = json.dumps({"entries": [enc.x509_entry(der(JPRS[0]))]})  # one kept entry
BAD = json.dumps({"entries": [{"leaf_input": "AA!A", "extra_data": ""}]})  # one skipped entry

# name, file, lines PlainLines takes, whether those are all
CASES: list[tuple[str, bytes, int, bool]] = [
    ("LF", f"{ONE}\n{EMPTY}\n{BAD}\n{ONE}\n".encode(), 4, True),
    ("CRLF", f"{ONE}\r\n{BAD}\r\n{ONE}\r\n".encode(), 3, True),
    ("lone CR", f"{ONE}\r{EMPTY}\r{ONE}".encode(), 3, True),
    ("no last break", f"{ONE}\n{ONE}".encode(), 2, True),
    ("blank of spaces and tabs", f"\n {ONE}\n \t \n\n{ONE}\n\t\n".encode(), 6, True),
    ("VT in a blank line", f"{ONE}\n \x0b \n{ONE}\n[]\n".encode(), 1, False),
    ("FF between responses", f"{ONE}\n{ONE}\x0c{ONE}\n".encode(), 1, False),
    ("non-ASCII text", f'{ONE}\n{{"entries": [], "note": "café"}}\n{ONE}\n'.encode(), 1, False),
    ("LS inside a string", f'{ONE}\n{{"entries": [], "n": "a\u2028b"}}\n'.encode(), 1, False),
    ("NEL inside a string", f'{ONE}\n{{"entries": [], "n": "a\x85b"}}\n'.encode(), 1, False),
    ("not UTF-8 on line 3", f"{ONE}\n{ONE}\n".encode() + b'{"entries": ["\xff"]}\n', 0, False),
    ("invalid JSON on line 3", f'{ONE}\n{EMPTY}\n{{"entries": [\n{ONE}\n'.encode(), 2, False),
    ("not a response on line 2", f"{ONE}\n[]\n{ONE}\n".encode(), 1, False),
    ("CR inside a response", f'{ONE}\n{{"entries":\r[]}}\n'.encode(), 1, False),
    ("NUL bytes", f"{ONE}\n".encode() + '{"entries": []}'.encode("utf-16-le") + b"\n", 1, False),
    ("BOM", f"{ONE}\n\ufeff{ONE}\n".encode(), 1, False),
    ("control character", f"{ONE}\n{ONE}\x1c\n".encode(), 1, False),
]


@pytest.mark.parametrize(
    ("content", "taken", "complete"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_file_reads_as_before_with_its_plain_lines_read_fast(
    tmp_path: Path, content: bytes, taken: int, complete: bool
) -> None:
    path = tmp_path / "entries.json"
    path.write_bytes(content)
    plain = PlainLines(path)
    list(plain.responses())
    assert (plain.count, plain.complete) == (taken, complete)
    fast, previous = both(path, CTX)
    assert fast == previous


def test_the_fast_reading_hands_out_the_responses_of_the_lines_it_takes(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    path.write_bytes(f"{EMPTY}\r\n\r\n{ONE}\n{EMPTY}\nétat\n{ONE}\n".encode())
    plain = PlainLines(path)
    assert [len(entries) for entries in plain.responses()] == [0, 1, 0]
    assert (plain.count, plain.complete) == (4, False)


PIECES = [
    EMPTY,
    ONE,
    BAD,
    "",
    " ",
    "\t",
    " \x0b",
    "\x0c",
    "\x1c",
    "[]",
    '{"entries": [',
    '{"entries": [], "n": "é"}',
    '{"entries": [], "n": "\u2028"}',
    '{"entries":\r[]}',
    "\ufeff" + EMPTY,
]


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    """Lines of responses, blanks and mistakes, with any of the breaks, sometimes a bad byte."""
    lines = draw(st.lists(st.sampled_from(PIECES), min_size=2, max_size=8))
    breaks = draw(st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=8, max_size=8))
    data = "".join(line + end for line, end in zip(lines, breaks, strict=False)).encode()
    if draw(st.booleans()):
        return data
    at = draw(st.integers(0, len(data)))
    return data[:at] + b"\xff" + data[at:]


@given(content=_files())
def test_fuzz_a_file_reads_as_before(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "entries.json"
        path.write_bytes(content)
        fast, previous = both(path, CTX)
    assert fast == previous
