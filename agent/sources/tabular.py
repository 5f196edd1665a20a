"""CSV sources (the issuance log's CSV form, CCADB's reports) and row-by-row collection.

What every row-based reader shares: a file that may be gzip-compressed, a header row, rows that
span several lines (PEM in a quoted field), locations that name the line where a row *starts*,
`--skip-invalid`, and progress reports for long files.

A table is read as its rows are used: the file (gunzipped as it is read, when it is gzip) is
decoded and cut into lines in pieces (`sources.lines`), so a reader holds the rows it keeps, not
the file. The file stays open until the rows are used up or the table is closed (`with`).
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Progress, SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.sources.lines import CSV_BREAKS, decoded_lines
from invsync.agent.sources.reading import (
    CHUNK_BYTES,
    SourceFile,
    max_source_bytes,
    open_source,
    read_chunks,
)

GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_EVERY = 500  # rows between two progress reports

Item = TypeVar("Item")  # one item of a source: a CSV row, a bundle entry
T = TypeVar("T")


class RowError(SourceError):
    """A SourceError about one row or entry, with where and what kept apart, so that
    --skip-invalid can report them as a `Skipped(location, reason)`."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason


@dataclass(frozen=True)
class Row:
    """One CSV row: `location` is `path:line` of the line where it starts."""

    location: str
    cells: tuple[str, ...]
    header: tuple[str, ...]

    def fields(self) -> dict[str, str]:
        """Column name -> cell; a row with more or fewer cells than the header is a RowError."""
        if len(self.cells) != len(self.header):
            reason = f"row has {len(self.cells)} fields, the header has {len(self.header)}"
            raise RowError(self.location, reason)
        return dict(zip(self.header, self.cells, strict=True))


NumberedRows = Generator[tuple[int, list[str]], None, None]
"""A CSV file's rows as (line where the row starts, cells), read as they are used."""


@dataclass(frozen=True)
class Table:
    """A CSV file's header and its rows, read lazily (`rows` can be iterated once). The file is
    closed when the rows are used up, or on `close()` (a `with` block closes it too)."""

    header: tuple[str, ...]
    header_location: str  # path:line of the header row
    rows: Iterator[Row]
    _source: NumberedRows = field(repr=False)

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file before its rows are used up."""
        self._source.close()

    def require(self, names: Sequence[str]) -> None:
        """A missing required column is an error naming it, before any row is read."""
        missing = [name for name in names if name not in self.header]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            listed = ", ".join(repr(name) for name in missing)
            raise SourceError(f"{self.header_location}: missing required column{plural} {listed}")


def open_table(path: Path) -> Table:
    """The header (the first non-blank row, unique names) and the rows after it."""
    numbered = _numbered_rows(path)
    try:
        header, header_location = _header(path, numbered)
    except SourceError:
        numbered.close()
        raise
    data = (Row(f"{path}:{start}", tuple(cells), header) for start, cells in numbered)
    return Table(header, header_location, data, numbered)


def csv_header(path: Path) -> tuple[str, ...]:
    """Just the header of a CSV file, for telling its kind (issuance log or a CCADB report)."""
    with open_table(path) as table:
        return table.header


def _header(path: Path, rows: NumberedRows) -> tuple[tuple[str, ...], str]:
    first = next(rows, None)
    if first is None:
        raise SourceError(f"{path}: file is empty, expected a header row")
    line, cells = first
    header = tuple(cell.strip() for cell in cells)
    header_location = f"{path}:{line}"
    _check_unique(header, header_location)
    return header, header_location


def _numbered_rows(path: Path) -> NumberedRows:
    with _text_lines(path) as lines:
        # strict: an unclosed quote must fail, not swallow the rest of the file into one field.
        reader = csv.reader(lines, strict=True)
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise SourceError(f"{path}:{start}: malformed CSV: {e}") from e
            if any(cell.strip() for cell in cells):  # blank lines and ",,," rows are not rows
                yield start, cells
            # line_num is the line where this row ended; quoted fields may span lines.
            start = reader.line_num + 1


@contextmanager
def _text_lines(path: Path) -> Iterator[Iterator[str]]:
    """The file's UTF-8 lines with their breaks, as csv.reader wants them, gunzipped first when
    it starts with gzip's magic bytes."""
    with open_source(path) as file:
        stream = io.BufferedReader(file, CHUNK_BYTES)  # peek for the magic without consuming it
        gzipped = stream.peek(len(GZIP_MAGIC)).startswith(GZIP_MAGIC)
        chunks = _gunzipped(path, stream) if gzipped else read_chunks(stream)
        # utf-8-sig: a spreadsheet's byte order mark is not a column name.
        yield decoded_lines(chunks, str(path), breaks=CSV_BREAKS, encoding="utf-8-sig")


def _gunzipped(path: Path, stream: io.BufferedReader[SourceFile]) -> Iterator[bytes]:
    # Decompressed text is held to the same cap as a file: a small gzip bomb is refused too.
    cap = max_source_bytes()
    size = 0
    with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
        while chunk := _gunzip_chunk(path, unzipped, min(CHUNK_BYTES, cap + 1 - size)):
            size += len(chunk)
            if size > cap:
                raise SourceError(
                    f"{path}: decompresses to more than the source size cap of {cap} bytes"
                    " (raise it with --max-source-bytes or agent.max_source_bytes)"
                )
            yield chunk


def _gunzip_chunk(path: Path, unzipped: gzip.GzipFile, size: int) -> bytes:
    try:
        return unzipped.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise SourceError(f"{path}: not a valid gzip file: {e}") from e


def _check_unique(header: Sequence[str], location: str) -> None:
    for name in header:
        if header.count(name) > 1:
            raise SourceError(f"{location}: column {name!r} appears twice")


class Tally:
    """Counts rows read and reports them to `progress` every PROGRESS_EVERY rows."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            self.progress(self.done, None)

    def finish(self) -> None:
        self.progress(self.done, self.done)


def collect(
    items: Iterable[tuple[str, Item]],
    parse: Callable[[Item], T],
    ctx: SourceContext,
    tally: Tally,
) -> tuple[list[T], list[Skipped]]:
    """`parse` every (location, item); a bad one raises, or is skipped with ctx.skip_invalid."""
    results: list[T] = []
    skipped: list[Skipped] = []
    for location, item in items:
        tally.tick()
        try:
            results.append(parse(item))
        except SourceError as e:
            if not ctx.skip_invalid:
                raise
            skipped.append(skipped_entry(e, location))
    return results, skipped


def skipped_entry(error: SourceError, location: str) -> Skipped:
    """`error` as a Skipped entry; its own location when it is a RowError, else `location`."""
    if isinstance(error, RowError):
        return Skipped(error.location, error.reason)
    return Skipped(location, str(error).removeprefix(f"{location}: "))
