"""Noticing that a daemon's configuration file changed, so that it reloads without a signal.

A change is a change of the file's bytes (its SHA-256), not of its modification time: an editor
or a configuration manager that writes the same bytes again, or sets the time back, changes
nothing and causes no reload. The file is read every POLL_SECONDS while the daemon idles, which
costs one small read: no inotify, so it works the same on every system and in containers.
A file caught half-written is a change too: the reload that follows checks it whole and refuses
it, and the complete file a moment later is a change again. For that, what is seen is marked
before the file is loaded, never after (`mark`): a file completed between the two is then
still a change at the next poll, and costs a reload that finds nothing new.
"""

from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

from invsync.agent.daemon.signals import SignalWaiter

POLL_SECONDS = 2.0
CHANGED = "changed"


class ConfigWatch:
    """Made before the file is loaded at start; `mark()` before each reload loads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen = _digest(path)

    def mark(self) -> None:
        """The file as it is now is the one about to be loaded."""
        self._seen = _digest(self.path)

    def changed(self) -> bool:
        """True once per change of the file's bytes since the last call (or the start)."""
        now = _digest(self.path)
        if now == self._seen:
            return False
        self._seen = now
        return True


def wait_for_event(
    waiter: SignalWaiter, watch: ConfigWatch, timeout: float | None, poll: float = POLL_SECONDS
) -> set[int] | str:
    """Until `timeout` seconds pass (None: for ever): the signals received, or CHANGED when the
    file changed first; an empty set on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return set()
        got = waiter.wait(poll if left is None else min(poll, left))
        if got:
            return got
        if watch.changed():
            return CHANGED


def is_stop(event: set[int] | str) -> bool:
    return isinstance(event, set) and bool(event & {signal.SIGTERM.value, signal.SIGINT.value})


def _digest(path: Path) -> bytes:
    """The file's SHA-256; a file that cannot be read has none (b""), a change once it can."""
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return b""
