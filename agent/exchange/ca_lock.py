"""One `tls sign` or `tls revoke` at a time on a CA directory.

Each reads the register, signs, and appends to it (a revocation also counts the CRL number on
and writes the CRL of every revocation so far): two at once would each write a CRL missing the
other's revocation, or number two CRLs alike. The lock is an exclusive `flock` on DIR/lock,
released by the kernel when the process ends, so a crash never leaves it held. A second
command waits for the first (it prints that it does), up to `wait` seconds, then is refused.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from invsync.agent.errors import InvsyncError

LOCK = "lock"
WAIT = 120.0  # the key command's own timeout, 30 s by default, several times over
_POLL = 0.05


class CaBusy(InvsyncError):
    """Another `tls sign` or `tls revoke` held the CA directory for too long."""

    hint = "Wait for the other `invsync tls` command on this CA to finish, then run this again."


@contextmanager
def holding(directory: Path, notice: Callable[[str], None], wait: float = WAIT) -> Iterator[None]:
    """The CA directory's lock, held for the block; `notice` told once when it must wait."""
    path = directory / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise CaBusy(f"{path}: cannot open the CA's lock ({e.strerror})") from e
    try:
        _take(fd, path, notice, wait)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _take(fd: int, path: Path, notice: Callable[[str], None], wait: float) -> None:
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        if time.monotonic() >= deadline:
            raise CaBusy(
                f"{path}: another `tls sign` or `tls revoke` (pid {holder}) still holds this CA "
                f"after {wait:g} seconds; nothing was done"
            )
        if not told:
            notice(f"waiting for another `tls sign` or `tls revoke` on this CA (pid {holder})")
            told = True
        time.sleep(_POLL)
