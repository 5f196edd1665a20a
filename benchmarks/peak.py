"""Run a module as `python -m` would, and write this process's peak resident set at its exit.

    python benchmarks/peak.py PEAK_FILE MODULE [ARG]...

A benchmark that reaps its child with wait4 gets an `ru_maxrss` that Linux carries over from the
parent at fork: a child started by a parent holding a million certificates reports the parent's
gigabytes even if it uses none. The new program's own peak is its VmHWM, which exec starts
afresh; this wrapper writes it (KiB, from /proc/self/status) to PEAK_FILE when the interpreter
exits, so the benchmark reads the child's peak alone.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
from pathlib import Path

CLI = "invsync.server.cli"


def peak_command(peak_file: Path, *args: str) -> list[str]:
    """`invsync ARGS` as a command line that writes its peak resident set to `peak_file`."""
    return [sys.executable, str(Path(__file__).resolve()), str(peak_file), CLI, *args]


def read_peak_mib(peak_file: Path) -> float | None:
    """The peak the wrapped process wrote, in MiB; None if it wrote none (killed, or exited
    without running interpreter exit handlers)."""
    try:
        return int(peak_file.read_text()) / 1024
    except (OSError, ValueError):
        return None


def _write_peak(path: Path) -> None:
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    path.write_text(kib)


def main() -> None:
    peak_file, module = Path(sys.argv[1]), sys.argv[2]
    atexit.register(_write_peak, peak_file)
    sys.argv = [module, *sys.argv[3:]]
    sys.path[0] = os.getcwd()  # as under `python -m`, not this script's folder
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
