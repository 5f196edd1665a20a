"""Audit scope: the SHA-256 fingerprints of the CA certificates an audit covered (DESIGN §4).

Three forms, one result (one `AuditScopeEntry` per fingerprint, 64 uppercase hex digits):
- CSV, such as the lists CAs publish beside their audit statements: the fingerprint column is
  found by its header; columns whose name ends in `?` (`WTCA?`, `WTBRSSL?`) are scheme flags;
- plain text, and the text pypdf extracts from an audit statement PDF: every fingerprint in it,
  contiguous or as byte pairs (`AB:CD:..`, `AB CD ..`), also when a line break splits it in two.

The audit itself (kind, period, statement date) is not in these files: it comes from
`SourceContext.audit`. A fingerprint listed twice is one entry (the first location, all flags).
A list that yields no fingerprint at all is an error: an empty scope would silently put every
certificate out of the audit. See docs/sources-crl-audit.md for the rules and their reasons.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, Skipped
from invsync.agent.sources.reading import read_bytes

AUDIT_SCOPE = "audit-scope"
PROGRESS_EVERY = 1000
FINGERPRINT_DIGITS = 64

UNKNOWN_AUDIT = AuditPeriod("", None, None)

# --- collecting entries -------------------------------------------------------------------


class _Collector:
    """The entries and skipped items of one file, under the file's --skip-invalid choice."""

    def __init__(self, path: Path, ctx: SourceContext) -> None:
        self.path = path
        self.ctx = ctx
        self.audit = ctx.audit or UNKNOWN_AUDIT
        self.entries: dict[str, AuditScopeEntry] = {}
        self.skipped: list[Skipped] = []

    def add(self, sha256: str, location: str, flags: tuple[str, ...] = ()) -> None:
        known = self.entries.get(sha256)
        if known is None:
            source = f"{AUDIT_SCOPE}:{location}"
            self.entries[sha256] = AuditScopeEntry(sha256, self.audit, source, flags)
        else:  # listed twice: keep where it was first seen, and every flag either row gave
            more = tuple(flag for flag in flags if flag not in known.flags)
            self.entries[sha256] = replace(known, flags=known.flags + more)

    def bad(self, location: str, reason: str) -> None:
        if not self.ctx.skip_invalid:
            raise SourceError(f"{location}: {reason}")
        self.skipped.append(Skipped(location, reason))

    def facts(self, what: str) -> Facts:
        if not self.entries:
            raise SourceError(f"{self.path}: no SHA-256 fingerprint found ({what})")
        return Facts(audit_scope=tuple(self.entries.values()), skipped=tuple(self.skipped))


def load_audit_scope(path: Path, ctx: SourceContext) -> Facts:
    """An audit scope list in any of the three forms: PDF by its magic bytes, CSV by its name."""
    if read_bytes(path).startswith(b"%PDF-"):
        return load_audit_pdf(path, ctx)
    if path.suffix.lower() == ".csv":
        return load_audit_csv(path, ctx)
    return load_audit_text(path, ctx)


# --- CSV ----------------------------------------------------------------------------------

_FINGERPRINT_WORDS = ("fingerprint", "thumbprint", "cert")
# Columns that hash something else than the certificate (CCADB has "Subject + SPKI SHA256").
_OTHER_HASHES = ("spki", "key", "subject", "issuer", "tbs")
_TRUE = frozenset({"y", "yes", "true", "x", "1", "✓", "✔"})
_FALSE = frozenset({"", "n", "no", "false", "0", "-", "n/a", "na", "none"})


@dataclass(frozen=True)
class _Columns:
    fingerprint: int
    flags: tuple[tuple[int, str], ...]  # (column index, flag name without the "?")
    width: int


def load_audit_csv(path: Path, ctx: SourceContext) -> Facts:
    """The fingerprints of a CSV scope list, with the scheme flags each row says are true."""
    collector = _Collector(path, ctx)
    rows = _csv_rows(path, _decode(path))
    header_line, header = next(rows, (1, []))
    columns = _columns(header, f"{path}:{header_line}")
    for done, (line, cells) in enumerate(rows, 1):
        location = f"{path}:{line}"
        try:
            sha256, flags = _row(cells, header, columns, location)
        except SourceError as e:
            collector.bad(location, str(e).removeprefix(f"{location}: "))
        else:
            collector.add(sha256, location, flags)
        if done % PROGRESS_EVERY == 0:
            ctx.progress(done, None)
    return collector.facts("the CSV has no data rows")


def _decode(path: Path) -> str:
    try:
        return read_bytes(path).decode("utf-8-sig")  # a spreadsheet's BOM is not a column name
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text: {e}") from e


def _csv_rows(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """(line where the row starts, cells) of each non-blank row; quoted fields may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                yield start, cells
            start = reader.line_num + 1
    except csv.Error as e:
        raise SourceError(f"{path}:{start}: not valid CSV: {e}") from e


def _columns(header: Sequence[str], location: str) -> _Columns:
    candidates = [i for i, name in enumerate(header) if _is_fingerprint_column(name)]
    if len(candidates) != 1:
        names = ", ".join(repr(name) for name in header)
        if candidates:
            found = ", ".join(repr(header[i]) for i in candidates)
            raise SourceError(f"{location}: several SHA-256 fingerprint columns: {found}")
        raise SourceError(
            f"{location}: no SHA-256 fingerprint column in the header ({names});"
            " expected one such as 'SHA-256 Fingerprint' or 'SHA-256(Certificate)'"
        )
    flags = tuple(
        (i, name.strip()[:-1].strip()) for i, name in enumerate(header) if name.strip()[-1:] == "?"
    )
    return _Columns(candidates[0], flags, len(header))


def _is_fingerprint_column(name: str) -> bool:
    key = re.sub(r"[^a-z0-9]", "", name.casefold())
    if "sha256" not in key or any(word in key for word in _OTHER_HASHES):
        return False
    return key == "sha256" or any(word in key for word in _FINGERPRINT_WORDS)


def _row(
    cells: Sequence[str], header: Sequence[str], columns: _Columns, location: str
) -> tuple[str, tuple[str, ...]]:
    if len(cells) != columns.width:
        raise SourceError(
            f"{location}: row has {len(cells)} fields, the header has {columns.width}"
        )
    name = header[columns.fingerprint]
    sha256 = _fingerprint_cell(cells[columns.fingerprint], name, location)
    flags = tuple(
        flag for index, flag in columns.flags if _flag(cells[index], header[index], flag, location)
    )
    return sha256, flags


def _fingerprint_cell(value: str, column: str, location: str) -> str:
    digits = re.sub(r"[\s:]", "", value)
    if not re.fullmatch(r"[0-9A-Fa-f]{64}", digits):
        raise SourceError(
            f"{location}: {column} {value.strip()!r} is not a SHA-256 fingerprint (64 hex digits)"
        )
    return digits.upper()


def _flag(value: str, column: str, flag: str, location: str) -> bool:
    """Whether a flag cell says yes. Sectigo writes the scheme's name ("BRSSL" under
    "WTBRSSL?") or "n/a"; others write Y/Yes/TRUE/x. Anything else is an error, not a guess."""
    word = value.strip().casefold()
    if word in _TRUE or (len(word) >= 2 and flag.casefold().endswith(word)):
        return True
    if word in _FALSE:
        return False
    raise SourceError(
        f"{location}: {column} {value.strip()!r} is neither yes (Y, Yes, TRUE, x, or the scheme's"
        " name) nor no (N, No, FALSE, n/a, empty)"
    )


# --- text and PDF -------------------------------------------------------------------------

# A hex "unit": byte pairs joined by single colons or spaces, or one contiguous run of hex
# digits. Neither may touch a letter or digit, so words such as "Authority" or "G4" never
# contribute, and dates ("2020-07-22") stay short units.
_UNIT = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2}(?:[: ][0-9A-Fa-f]{2})+|[0-9A-Fa-f]+)(?![0-9A-Za-z])"
)


# A unit shorter than this joins a wrapped fingerprint only at the edge of its line (a head
# ending it, a tail starting it), so that dates, times and words such as "CA" never do.
_MIN_INNER_PART = 8


@dataclass(frozen=True)
class _Unit:
    line: int
    digits: str
    at_start: bool  # nothing but blanks before it on its line
    at_end: bool  # nothing but blanks after it on its line


@dataclass(frozen=True)
class _Hit:
    """A fingerprint that starts on `line`, or (sha256 "") a hex run that is not one."""

    line: int
    sha256: str
    problem: str = ""


def load_audit_text(path: Path, ctx: SourceContext) -> Facts:
    """Every fingerprint in a text file; locations are `path:line` where each starts."""
    collector = _Collector(path, ctx)
    text = _decode(path)
    for done, hit in enumerate(_find_fingerprints(text), 1):
        _collect(collector, hit, f"{path}:{hit.line}")
        if done % PROGRESS_EVERY == 0:
            ctx.progress(done, None)
    return collector.facts("expected 64 hex digits, contiguous or as byte pairs")


def load_audit_pdf(path: Path, ctx: SourceContext) -> Facts:
    """Every fingerprint in the text of a PDF; locations are `path:page N`."""
    collector = _Collector(path, ctx)
    pages = _pdf_pages(path)
    for number, text in enumerate(pages, 1):
        for hit in _find_fingerprints(text):
            _collect(collector, hit, f"{path}:page {number}")
        ctx.progress(number, len(pages))
    return collector.facts("in the text extracted from the PDF")


def _collect(collector: _Collector, hit: _Hit, location: str) -> None:
    if hit.sha256:
        collector.add(hit.sha256, location)
    else:
        collector.bad(location, hit.problem)


def _pdf_pages(path: Path) -> list[str]:
    # Imported here: pypdf costs every invsync process about 60 ms to import, and only an audit
    # statement PDF needs it.
    import pypdf
    from pypdf.errors import PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(read_bytes(path)))
        if reader.is_encrypted:
            raise SourceError(f"{path}: the PDF is encrypted; give an unencrypted copy")
        return [page.extract_text() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as e:
        # pypdf raises more than its own errors on a broken file; all of them mean "unreadable".
        raise SourceError(f"{path}: not a readable PDF: {e}") from e


def _find_fingerprints(text: str) -> Iterator[_Hit]:
    """The fingerprints of `text`, in order, and the hex runs too long to be one.

    A fingerprint is a unit of exactly 64 hex digits, or a head on one line and a tail on the
    next whose digits add up to 64: a thumbprint wrapped in a table cell, whose tail may follow
    other cells' text. Shorter units (serials, key ids, dates) are ignored; a longer one is
    reported, not guessed at: it may be a fingerprint glued to its neighbour by text extraction.
    """
    heads: list[_Unit] = []
    for number, line in enumerate(text.replace("\u00a0", " ").splitlines(), 1):
        units = [_unit(number, line, match) for match in _UNIT.finditer(line)]
        hits, heads = _line_hits(units, heads)
        yield from hits


def _unit(number: int, line: str, match: re.Match[str]) -> _Unit:
    digits = re.sub("[: ]", "", match.group())
    at_start = not line[: match.start()].strip()
    return _Unit(number, digits, at_start, not line[match.end() :].strip())


def _line_hits(units: list[_Unit], heads: list[_Unit]) -> tuple[list[_Hit], list[_Unit]]:
    """This line's hits, and its units that may be the head of a fingerprint the next line
    ends. `heads` are the previous line's; a unit is part of one fingerprint at most."""
    hits: list[_Hit] = []
    heads = list(heads)
    rest: list[_Unit] = []
    for unit in units:
        size = len(unit.digits)
        if size == FINGERPRINT_DIGITS:
            hits.append(_Hit(unit.line, unit.digits.upper()))
        elif size > FINGERPRINT_DIGITS:
            hits.append(_Hit(unit.line, "", _too_long(size)))
        elif not _joins(unit, unit.at_start) or not _join(unit, heads, hits):
            rest.append(unit)
    return hits, [unit for unit in rest if _joins(unit, unit.at_end)]


def _joins(unit: _Unit, at_edge: bool) -> bool:
    return at_edge or len(unit.digits) >= _MIN_INNER_PART


def _join(tail: _Unit, heads: list[_Unit], hits: list[_Hit]) -> bool:
    """Whether `tail` ends a fingerprint one of `heads` starts (that head is used up), or is
    ambiguous; either way it goes into `hits`."""
    matches = [head for head in heads if len(head.digits) + len(tail.digits) == FINGERPRINT_DIGITS]
    if not matches:
        return False
    if len(matches) > 1:
        problem = (
            f"{len(tail.digits)} hex digits could end any of {len(matches)} hex runs of the line"
            " before: not taken as a fingerprint"
        )
        hits.append(_Hit(tail.line, "", problem))
        return True
    head = matches[0]
    heads.remove(head)
    hits.append(_Hit(head.line, (head.digits + tail.digits).upper()))
    return True


def _too_long(size: int) -> str:
    return (
        f"a run of {size} hex digits is longer than a SHA-256 fingerprint ({FINGERPRINT_DIGITS})"
        " and is not taken as one; separate the fingerprint from its neighbours"
    )
