"""Python's cycle collector paused over a large piece of work (issue 13).

A cycle at 100,000 certificates builds millions of container objects (records, their sources,
decoded snapshots) that stay alive until it ends. CPython's collector counts allocations, and
each time the objects alive grow by a quarter it scans all of them: fifteen full scans in one
steady agent cycle, 2.2 to 3.2 s of its 21 s of CPU, measured with `gc.callbacks`. Almost nothing
such work drops is cyclic (reference counting frees it), so the collector is paused for the work
and runs once when the last paused piece ends, over what is left.

Pauses nest and may overlap across threads (the exchange server's calls): the collector runs
again when no pause is left. One the caller had disabled itself stays disabled.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_paused = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic cycle collection within; one collection when the last pause ends."""
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _paused, _was_enabled
    with _LOCK:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1


def _leave() -> None:
    global _paused
    with _LOCK:
        _paused -= 1
        if _paused or not _was_enabled:
            return
        gc.enable()
    gc.collect()  # outside the lock: another pause may start meanwhile, and collects later
