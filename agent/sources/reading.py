"""Reading a source file's bytes, with errors that name the file.

A source is read only if it is a regular file no larger than the source size cap
(`agent.max_source_bytes`, `--max-source-bytes`): the type and size are checked with `fstat`
before a byte is read, and the file is opened with O_NONBLOCK so that a FIFO never blocks.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from invsync.agent.errors import SourceError

DEFAULT_MAX_SOURCE_BYTES = 256 * 1024 * 1024
"""The default cap on one source file's size (256 MiB)."""

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
    try:
        _check_type(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise _cannot_read(path, e) from e
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_type(path, info.st_mode)
        _check_size(path, info.st_size, cap)
        try:
            data = file.read(cap + 1)
        except OSError as e:
            raise _cannot_read(path, e) from e
    _check_size(path, len(data), cap)  # the file grew after fstat
    return data


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
