"""Reading a source file's bytes, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from invsync.agent.errors import SourceError


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is a SourceError naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from e
