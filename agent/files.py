"""Writing files so that a reader sees the old content or the new, never half of it."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def exposed_mode(path: Path) -> int | None:
    """`path`'s permission bits when group or others have any (a private key file must not
    let them read or replace it); None for 0600 or tighter. OSError if it cannot be stat'ed."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return mode if mode & (stat.S_IRWXG | stat.S_IRWXO) else None


def write_atomically(path: Path, data: bytes | str) -> None:
    """A temp file beside `path`, fsync, rename over `path`, fsync the directory."""
    raw = data.encode() if isinstance(data, str) else data
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Make a rename into `directory` durable: only once its entry is on disk is it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
