"""Progress of long work on a terminal: a line that updates in place, on stderr only.

Nothing is printed when stderr is not a terminal (CI, logs, pipes), so output stays clean.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from invsync.agent.model.bundle import Progress

_EVERY = 0.2  # seconds between redraws


def terminal_progress(label: str, stream: TextIO | None = None) -> Progress:
    out = stream or sys.stderr
    if not out.isatty():
        return _silent
    last = [0.0]

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - last[0] < _EVERY and not finished:
            return
        last[0] = now
        of = f"/{total}" if total else ""
        out.write(f"\r{label}: {done}{of}" + ("\n" if finished else ""))
        out.flush()

    return show


def _silent(done: int, total: int | None) -> None:
    return None
