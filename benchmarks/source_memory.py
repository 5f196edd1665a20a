"""Benchmark: memory and time of reading a large issuance log (JSON Lines) and a large PEM bundle.

    .venv/bin/python benchmarks/source_memory.py [--mib N] [--dir DIR]

Writes a synthetic JSON Lines issuance log and a synthetic PEM bundle of N MiB each (default
128, under the 256 MiB source size cap) into a temporary directory (or DIR, kept), made of the
demo data's certificates repeated: both readers keep one record per line or block, duplicates
included (merging by SHA-256 comes later). Each file is then read in child processes, so that
every figure comes from a fresh interpreter: once for the wall time and the peak resident set
(ru_maxrss), once under tracemalloc for the Python heap's peak and what is still held when the
reader returns (the records). `transient` is the difference: what reading cost beyond what it
kept. Prints one JSON object. See benchmarks/README.md for measured figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import invsync.agent
from invsync.agent.model.bundle import SourceContext
from invsync.agent.sources import reading
from invsync.agent.sources.issuance_log import load_issuance_log_facts
from invsync.agent.sources.pem import load_pem_file

MIB = 1024 * 1024
NOW = datetime(2021, 3, 1, tzinfo=UTC)
DEMO = Path(invsync.agent.__file__).parent / "demo_data"
READERS: dict[str, Callable[[Path], Sequence[object]]] = {
    "issuance-log": lambda path: load_issuance_log_facts(path, SourceContext(now=NOW)).records,
    "pem": lambda path: load_pem_file(path, NOW),
}
FILE_NAMES = {"issuance-log": "issued.jsonl", "pem": "bundle.pem"}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if args.measure:
        kind, path = args.measure
        print(json.dumps(_measure(kind, Path(path), trace=args.trace)))
        return 0
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
        print(json.dumps(_benchmark(args.dir, args.mib), indent=2))
        return 0
    with tempfile.TemporaryDirectory(prefix="invsync-source-memory-") as folder:
        print(json.dumps(_benchmark(Path(folder), args.mib), indent=2))
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128, help="size of each file (default 128)")
    parser.add_argument("--dir", type=Path, help="write the files here and keep them")
    # Used by the benchmark itself: read one file in this (child) process and print figures.
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _benchmark(folder: Path, mib: int) -> dict[str, object]:
    files = {
        "issuance-log": _write(folder / FILE_NAMES["issuance-log"], _log_block(), mib),
        "pem": _write(folder / FILE_NAMES["pem"], _pem_block(), mib),
    }
    runs = [
        {"source": kind, **_child(kind, path, trace=trace)}
        for kind, path in files.items()
        for trace in (False, True)
    ]
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "code": str(Path(reading.__file__).resolve()),  # which checkout ran (before/after)
        "files": {kind: {"bytes": path.stat().st_size} for kind, path in files.items()},
        "runs": runs,
    }


def _log_block() -> bytes:
    """The demo issuance log's 12 entries, one a line."""
    lines = (DEMO / "secom_issuance_log.jsonl").read_bytes().splitlines()
    return b"".join(line + b"\n" for line in lines if line.strip())


def _pem_block() -> bytes:
    """The demo PEM files' 21 certificates, with a comment line before each file's blocks."""
    parts = [b"# " + p.name.encode() + b"\n" + p.read_bytes() for p in sorted(DEMO.glob("*.pem"))]
    return b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts)


def _write(path: Path, block: bytes, mib: int) -> Path:
    """`block` repeated until the file holds at least `mib` MiB (whole blocks only)."""
    with path.open("wb") as f:
        for _ in range(-(-mib * MIB // len(block))):
            f.write(block)
    return path


def _child(kind: str, path: Path, *, trace: bool) -> dict[str, object]:
    command = [sys.executable, __file__, "--measure", kind, str(path)]
    done = subprocess.run(
        [*command, "--trace"] if trace else command, check=True, capture_output=True, text=True
    )
    figures: dict[str, object] = json.loads(done.stdout)
    return figures


def _measure(kind: str, path: Path, *, trace: bool) -> dict[str, object]:
    """Read one file here; with `trace`, under tracemalloc (slower: its time is not comparable)."""
    read = READERS[kind]
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    records = read(path)
    seconds = time.perf_counter() - start
    figures: dict[str, object] = {
        "traced": trace,
        "records": len(records),
        "seconds": round(seconds, 2),
    }
    if trace:
        held, peak = tracemalloc.get_traced_memory()  # `records` is still referenced: held
        tracemalloc.stop()
        figures |= {
            "peak_mib": _mib(peak),
            "held_after_mib": _mib(held),
            "transient_mib": _mib(peak - held),
        }
    else:
        # ru_maxrss is in KiB on Linux: the peak resident set of this fresh process.
        figures["max_rss_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return figures


def _mib(size: int) -> float:
    return round(size / MIB, 1)


if __name__ == "__main__":
    sys.exit(main())
