"""The federation CA's register (`issued.jsonl`): one JSON object a line, one per certificate
signed and one per revocation, appended under the CA's lock (agent.exchange.ca_lock).

A line is appended by one `write` of the whole line, newline included, and synced before the
certificate is written out or the CRL is written. So a line cut short (the process or the
machine stopped mid-write) is always the last one, and what it began was never handed out:
the next `tls sign` or `tls revoke` removes it, says so, and goes on. A last line that is
whole but lacks its newline is kept and given its newline. Any other line that is not an
entry is refused, naming the file and line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from invsync.agent.errors import InvsyncError

REGISTER = "issued.jsonl"
_SHOWN = 80  # characters of a cut-short line quoted when it is removed


class RegisterError(InvsyncError):
    """The CA's register cannot be read or written. The message names the file and line."""

    hint = (
        "The register is issued.jsonl in the CA directory, one JSON object a line; restore it "
        "from the backup of the CA directory if a line other than the last is damaged."
    )


def read_entries(path: Path, notice: Callable[[str], None]) -> list[dict[str, str]]:
    """The register's entries, oldest first, a cut-short last line removed (told to `notice`).
    Call under the CA's lock: the removal writes the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RegisterError(f"{path}: cannot read the register ({e.strerror})") from e
    *lines, tail = data.split(b"\n")
    entries = [_entry(path, number, line) for number, line in enumerate(lines, start=1)]
    if not tail:
        return entries
    number = len(lines) + 1
    try:
        entry = _entry(path, number, tail)
    except RegisterError:
        _truncate(path, len(data) - len(tail))
        shown = tail[:_SHOWN].decode(errors="replace")
        notice(
            f"{path}:{number}: removed a line cut short by an interrupted write ({shown!r}); "
            "the certificate or revocation it began was never written out: if it was a "
            "revocation, run that `tls revoke` again"
        )
        return entries
    _write_line(path, b"\n")  # it was whole: only its newline was lost
    entries.append(entry)
    return entries


def append(path: Path, entry: dict[str, str]) -> None:
    """One line more, synced before the caller hands out what it records."""
    _write_line(path, (json.dumps(entry, sort_keys=True) + "\n").encode())


def _entry(path: Path, number: int, line: bytes) -> dict[str, str]:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise RegisterError(f"{path}:{number}: not a JSON object ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise RegisterError(f"{path}:{number}: not UTF-8 text ({e.reason})") from e
    if not isinstance(entry, dict) or not isinstance(entry.get("serial"), str):
        raise RegisterError(f"{path}:{number}: not an entry with a serial")
    return entry


def _write_line(path: Path, line: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            # One write: a crash leaves the line whole or cut short at the end, never split.
            if os.write(fd, line) != len(line):
                raise OSError(28, "the disk took only part of the line")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise RegisterError(
            f"{path}: cannot record in the register ({e.strerror}); nothing was handed out"
        ) from e


def _truncate(path: Path, size: int) -> None:
    try:
        os.truncate(path, size)
        fd = os.open(path, os.O_WRONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise RegisterError(f"{path}: cannot remove its cut-short last line ({e.strerror})") from e
