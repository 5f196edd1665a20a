"""One daemon per database: a second agent or server on the same SQLite file is refused.

SQLite would serialize two writers, but two daemons would each build snapshot versions from
the same state and push conflicting ones. The lock is an exclusive `flock` on `DB.lock`,
released by the kernel when the process ends, so a crashed daemon never leaves it stale.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from invsync.agent.errors import StoreError


class DatabaseInUse(StoreError):
    hint = "Stop the other daemon first; two daemons must never share one database."


class DaemonLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> DaemonLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DatabaseInUse(
                f"{self.path.with_suffix('')}: another invsync daemon (pid {holder}) uses this "
                "database"
            ) from e
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
