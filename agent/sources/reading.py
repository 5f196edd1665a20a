"""Reading a source file, whole or in pieces, with errors that name the file.

A source is read only if it is a regular file no larger than the source size cap
(`agent.max_source_bytes`, `--max-source-bytes`): the type and size are checked with `fstat`
before a byte is read, and the file is opened with O_NONBLOCK so that a FIFO never blocks.
A file read in pieces (`open_source`, `open_lines`) has its bytes counted as they come, so that
one which grows past the cap while it is read is refused too.

Line-oriented readers use `open_lines`: the file is decoded and cut into lines as it is read,
so what a reader holds is what it keeps, not the file.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from invsync.agent.errors import SourceError
from invsync.agent.sources.lines import decoded_lines, strip_break

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

DEFAULT_MAX_SOURCE_BYTES = 256 * 1024 * 1024
"""The default cap on one source file's size (256 MiB)."""

CHUNK_BYTES = 64 * 1024
"""How much of a file a reader in pieces reads at once."""

_max_source_bytes: ContextVar[int] = ContextVar(
    "max_source_bytes", default=DEFAULT_MAX_SOURCE_BYTES
)

_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


@contextmanager
def source_size_cap(max_bytes: int | None) -> Iterator[None]:
    """Within the block, read_bytes refuses files larger than `max_bytes` (None: the default)."""
    token = _max_source_bytes.set(max_bytes or DEFAULT_MAX_SOURCE_BYTES)
    try:
        yield
    finally:
        _max_source_bytes.reset(token)


def max_source_bytes() -> int:
    """The cap read_bytes applies now."""
    return _max_source_bytes.get()


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing, unreadable, non-regular or too large file is a SourceError
    naming it."""
    cap = _max_source_bytes.get()
    with _open_checked(path, cap) as file:
        try:
            data = file.read(cap + 1)
        except OSError as e:
            raise _cannot_read(path, e) from e
    _check_size(path, len(data), cap)  # the file grew after fstat
    return data


class SourceFile(io.RawIOBase):
    """A source file that passed the checks of read_bytes, read in pieces: a read that takes it
    past the size cap (the file grew after fstat) or fails is a SourceError naming it."""

    def __init__(self, path: Path, file: io.BufferedReader, cap: int) -> None:
        super().__init__()
        self.path = path
        self._file = file
        self._cap = cap
        self._count = 0  # bytes read so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        # One byte past the cap is enough to tell that the file is too large.
        wanted = min(len(view), self._cap + 1 - self._count)
        try:
            count = self._file.readinto(view[:wanted])
        except OSError as e:
            raise _cannot_read(self.path, e) from e
        self._count += count
        _check_size(self.path, self._count, self._cap)
        return count


class Readable(Protocol):
    """What read_chunks reads: a SourceFile, a buffered or gunzipping reader over one."""

    def read(self, size: int, /) -> bytes | None: ...


@contextmanager
def open_source(path: Path) -> Iterator[SourceFile]:
    """The file for reading in pieces, under read_bytes's checks and size cap."""
    cap = _max_source_bytes.get()
    with _open_checked(path, cap) as file:
        yield SourceFile(path, file, cap)


def read_chunks(stream: Readable) -> Iterator[bytes]:
    """The rest of `stream`, CHUNK_BYTES at a time."""
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk


def read_spans(path: Path, spans: Iterable[tuple[int, int]]) -> Iterator[bytes]:
    """The bytes at each (offset, length) of a file, in the order given, under read_bytes's
    checks and size cap; a span that ends past the file's end is a SourceError naming it."""
    cap = _max_source_bytes.get()
    with _open_checked(path, cap) as file:
        for offset, length in spans:
            try:
                file.seek(offset)
                data = file.read(length)
            except OSError as e:
                raise _cannot_read(path, e) from e
            if len(data) != length:
                raise SourceError(f"{path}: file is shorter than when it was read (changed?)")
            yield data


@contextmanager
def open_lines(path: Path, *, errors: str = "strict") -> Iterator[Iterator[tuple[int, str]]]:
    """The file's UTF-8 text as (line number from 1, line without its break), read, decoded and
    cut as the lines are used; lines break where `str.splitlines` breaks them. A byte that is
    not UTF-8 is a SourceError naming the file and line (unless `errors="replace"`)."""
    with open_source(path) as file:
        lines = decoded_lines(read_chunks(file), str(path), errors=errors)
        yield ((number, strip_break(line)) for number, line in enumerate(lines, 1))


def read_text(path: Path) -> str:
    """The file's whole UTF-8 text, for a format that cannot be read line by line; a byte that
    is not UTF-8 is a SourceError naming the file and line."""
    text = io.StringIO()
    with open_source(path) as file:
        for line in decoded_lines(read_chunks(file), str(path)):
            text.write(line)
    return text.getvalue()


@contextmanager
def _open_checked(path: Path, cap: int) -> Iterator[io.BufferedReader]:
    """The file opened once it is known to be a regular file within the cap, by the path and
    again by the open descriptor (the path may have been replaced in between)."""
    try:
        _check_type(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _cannot_read(path, e) from e
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_type(path, info.st_mode)
        _check_size(path, info.st_size, cap)
        yield file


def _check_type(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise SourceError(f"{path}: cannot read: {os.strerror(errno.EISDIR)}")
    for test, name in _TYPES:
        if test(mode):
            raise SourceError(f"{path}: is {name}, not a regular file; refusing to read it")


def _check_size(path: Path, size: int, cap: int) -> None:
    if size > cap:
        raise SourceError(
            f"{path}: file is {size} bytes, larger than the source size cap of {cap} bytes"
            " (raise it with --max-source-bytes or agent.max_source_bytes)"
        )


def _cannot_read(path: Path, e: OSError) -> SourceError:
    if isinstance(e, PermissionError):
        return SourceError(f"{path}: cannot read: permission denied")
    return SourceError(f"{path}: cannot read: {e.strerror or e}")
