"""Waiting for a daemon's signals so that none is lost, whichever thread the kernel hands it to.

A process-wide signal may be delivered to any thread that does not block it (gRPC's threads,
a call pool's), and CPython runs the Python handler only in the main thread, when that thread
next runs bytecode. A main thread asleep on a lock (`threading.Event.wait`) is then not woken:
a SIGTERM could go unnoticed until a timeout, or for ever. `signal.set_wakeup_fd` makes the C
handler write the signal's number to a socket in whatever thread it runs, and the main thread
waits on that socket instead.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable
from types import FrameType, TracebackType


class SignalWaiter:
    """Within `with SignalWaiter(signals) as waiter:`, `waiter.wait(timeout)` returns the
    signals received since the last call (an empty set on timeout). Enter it before anything
    starts, so that a signal sent as soon as the daemon announces itself meets a handler, not
    the default action that kills the process unannounced."""

    def __init__(self, signals: Iterable[signal.Signals]) -> None:
        self.signals = frozenset(signals)
        self._reader, self._writer = socket.socketpair()
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> SignalWaiter:
        self._writer.setblocking(False)  # the signal module requires it
        signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, _ignore)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(-1)  # before the socket closes: its number may be reused
        self._reader.close()
        self._writer.close()

    def wait(self, timeout: float | None = None) -> set[int]:
        """The signals of ours received until `timeout` seconds pass (None: until one comes)."""
        while True:
            ready, _, _ = select.select([self._reader], [], [], timeout)
            if not ready:
                return set()
            got = self.signals.intersection(self._reader.recv(64))
            if got:
                return set(got)
            # A signal someone else gave a Python handler: keep waiting (without the timeout
            # restarting in full is acceptable: a daemon's intervals are not that precise).


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Only replaces the default action; the waiter reads the signal from its socket."""
