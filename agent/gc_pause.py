"""Python's cycle collector paused over a large piece of work (issue 13).

A cycle at 100,000 certificates builds millions of container objects (records, their sources,
decoded snapshots) that stay alive until it ends. CPython's collector counts allocations, and
each time the objects alive grow by a quarter it scans all of them: fifteen full scans in one
steady agent cycle, 2.2 to 3.2 s of its 21 s of CPU, measured with `gc.callbacks`. Almost nothing
such work drops is cyclic (reference counting frees it), so the collector is paused for the work
and runs once when the last paused piece ends, over what is left.

Pauses nest and may overlap across threads (the exchange server's calls): the collector runs
again when no pause is left. One the caller had disabled itself stays disabled.

A one-shot command (`agent run --once`, `reconcile`, `inventory import`) ends its process right
after its work: a collection then would only scan, for nothing, what the process is about to
drop (0.25 s of an agent's steady cycle at 100,000 certificates), and the interpreter's exit
would scan it again. Paused with `exiting=True` in a process that the console script started
(`ends_with_command`, called by `server.cli.console`; a test calling the command group in its
own process keeps collecting), what is alive when the last pause ends is frozen instead
(`gc.freeze`: no collection looks at it again). What it left unreachable in reference cycles
is then never finalized: such a command closes its files, connections and transactions
itself, never through a finalizer.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_paused = 0
_was_enabled = False
_process_ends_with_command = False
# A daemon's pauses: every FULL_EVERY-th one collects what earlier ones froze too.
FULL_EVERY = 8
_kept = 0


def ends_with_command() -> None:
    """Say that this process ends when its command does (the console entry point's)."""
    global _process_ends_with_command
    _process_ends_with_command = True


@contextmanager
def collector_paused(*, exiting: bool = False, keeping: bool = False) -> Iterator[None]:
    """No automatic cycle collection within; one collection when the last pause ends, or, with
    `exiting` (the process ends after it) in a process of the console entry point, what is
    alive then frozen instead. With `keeping` (a daemon's cycle, which keeps what it derived
    for the next one) in a process of the console entry point, what is alive is frozen and
    every FULL_EVERY-th such pause collects everything (`_freeze_kept`); a test running
    cycles in its own process is not frozen."""
    _enter()
    try:
        yield
    finally:
        _leave(exiting, keeping)


def _enter() -> None:
    global _paused, _was_enabled
    with _LOCK:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1


def _leave(exiting: bool, keeping: bool = False) -> None:
    global _paused
    with _LOCK:
        _paused -= 1
        if _paused or not _was_enabled:
            return
        freeze = exiting and _process_ends_with_command
        if freeze:
            gc.freeze()  # before the collector is back: nothing alive now is scanned again
        gc.enable()
    if freeze:
        return
    if keeping and _process_ends_with_command:
        _freeze_kept()
    else:
        gc.collect()  # outside the lock: another pause may start meanwhile, and collects later


def _freeze_kept() -> None:
    """Freeze what is alive (`gc.freeze`), and every FULL_EVERY-th pause unfreeze everything
    and collect it all first. A daemon keeps about as much between cycles as a cycle makes
    (its records' encodings, the stored view, the decoded snapshots): scanning it all again at
    each cycle's end was 0.7 s of a 7 s cycle at 100,000 certificates, and scanning what one
    cycle made still 0.2 s, to find almost nothing: what a cycle drops is freed by reference
    counting as it goes. A reference cycle made or dropped in a cycle so waits for the
    FULL_EVERY-th pause, and nothing cyclic is held longer than FULL_EVERY cycles."""
    global _kept
    _kept += 1
    if _kept % FULL_EVERY == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()
