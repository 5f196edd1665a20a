"""Benchmark: import CCADB's AllCertificatePEMsCSVFormat set into a fresh agent store.

    .venv/bin/python benchmarks/import_ccadb.py PATH [--runs N] [--no-tracemalloc]

PATH is a directory of `AllCertificatePEMsCSVFormat*.csv` or `.csv.gz` files (the per-year
set). Each run parses every file (`load_ccadb_pem_files`, with --skip-invalid) and writes the
records into a new SQLite store (`AgentStore.replace_inventory`), then prints certificates per
second for the parse, the store write and both, and the process's peak resident set (ru_maxrss).
After each run, the floor of the same import (benchmarks/import_floor.py: the libraries' own
work on the same rows, no invsync code), so that import and floor share the machine's moment.
Then the medians of both, the import's share of the floor, and one more run under tracemalloc
for the Python heap's peak (that run is slower: its rates are not comparable). See
benchmarks/README.md for measured figures.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from invsync.agent.gc_pause import collector_paused, ends_with_command
from invsync.agent.model import record
from invsync.agent.model.bundle import SourceContext
from invsync.agent.sources.ccadb_pems import load_ccadb_pem_files
from invsync.agent.store.agent_store import AgentStore

if __package__ in (None, ""):  # run as a script: the project root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.import_floor import floor_run

PATTERNS = ("AllCertificatePEMsCSVFormat*.csv", "AllCertificatePEMsCSVFormat*.csv.gz")


@dataclass(frozen=True)
class Run:
    rows: int
    records: int
    skipped: int
    parse_s: float
    store_s: float
    traced_peak_mib: float  # tracemalloc's peak: Python allocations during the run; 0 if off

    @property
    def parse_rate(self) -> float:
        return self.rows / self.parse_s

    @property
    def store_rate(self) -> float:
        return self.records / self.store_s

    @property
    def overall_rate(self) -> float:
        return self.records / (self.parse_s + self.store_s)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    files = sorted({p for pattern in PATTERNS for p in args.path.glob(pattern)})
    if not files:
        print(
            f"error: {args.path}: no AllCertificatePEMsCSVFormat*.csv[.gz] files", file=sys.stderr
        )
        return 2
    print(f"{len(files)} files in {args.path}, {args.runs} timed runs")
    ends_with_command()  # each run pauses the collector as the console's `inventory import`
    print(_HEADER)
    runs, floors = [], []
    for n in range(1, args.runs + 1):
        runs.append(_report(str(n), _run(files, trace=False)))
        floors.append(_report("floor", _floor(files)))
    imported, floor = _report("median", _median(runs)), _report("floor", _median(floors))
    print(f"import / floor, overall: {imported.overall_rate / floor.overall_rate:.3f}")
    if not args.no_tracemalloc:
        # tracemalloc slows this allocation-heavy import about fourfold, so the Python heap's
        # peak is measured in one more run of its own, whose rates are not comparable.
        _report("traced", _run(files, trace=True))
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="directory of AllCertificatePEMsCSVFormat files")
    parser.add_argument("--runs", type=int, default=5, help="how many imports (default 5)")
    parser.add_argument(
        "--no-tracemalloc",
        action="store_true",
        help="skip the extra run that measures the Python heap's peak with tracemalloc",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _run(files: list[Path], *, trace: bool) -> Run:
    _afresh()
    now = datetime.now(UTC)
    done: list[int] = []  # the reader's progress reports: its last one counts every row
    ctx = SourceContext(now=now, skip_invalid=True, progress=lambda rows, _: done.append(rows))
    if trace:
        tracemalloc.start()
    # As `inventory import` runs from the console: the collector paused throughout, and what
    # is alive at the end frozen, not collected (agent.gc_pause); _afresh collects it later.
    with warnings.catch_warnings(), collector_paused(exiting=True):
        warnings.simplefilter("ignore")  # cryptography warns about some real certificates
        started = time.perf_counter()
        facts = load_ccadb_pem_files(files, ctx)
        parsed = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, AgentStore(Path(tmp) / "agent.db") as store:
            stored_from = time.perf_counter()
            store.replace_inventory(facts.records, now)
            stored = time.perf_counter()
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    return Run(
        done[-1],
        len(facts.records),
        len(facts.skipped),
        parsed - started,
        stored - stored_from,
        peak / 2**20,
    )


def _afresh() -> None:
    """Start a run from nothing: a CertInfo of an earlier run still alive (frozen, or in a
    reference cycle not collected yet) would be shared instead of parsed (agent.model.record's
    _ALIVE), and later runs would time a lookup, not a parse. Likewise the names read."""
    gc.unfreeze()
    gc.collect()
    record.forget_names()
    if record._ALIVE:
        raise SystemExit(f"{len(record._ALIVE)} certificates of an earlier run are still alive")


def _floor(files: list[Path]) -> Run:
    _afresh()
    with collector_paused(exiting=True):
        floor = floor_run(files)
    return Run(floor.rows, floor.records, floor.skipped, floor.read_s, floor.store_s, 0)


_HEADER = (
    f"{'run':>6} {'rows':>7} {'records':>8} {'skipped':>8} {'parse/s':>9} {'store/s':>9}"
    f" {'overall/s':>10} {'traced MiB':>11} {'maxrss MiB':>11}"
)


def _report(label: str, run: Run) -> Run:
    traced = f"{run.traced_peak_mib:.1f}" if run.traced_peak_mib else "-"
    print(
        f"{label:>6} {run.rows:>7} {run.records:>8} {run.skipped:>8} {run.parse_rate:>9,.0f}"
        f" {run.store_rate:>9,.0f} {run.overall_rate:>10,.0f} {traced:>11}"
        f" {_maxrss_mib():>11.1f}",
        flush=True,
    )
    return run


def _median(runs: list[Run]) -> Run:
    """A run whose times are the median times (so its rates are the median rates)."""
    return replace(
        runs[0],
        parse_s=statistics.median(r.parse_s for r in runs),
        store_s=statistics.median(r.store_s for r in runs),
    )


def _maxrss_mib() -> float:
    # The process's peak resident set so far (Linux reports KiB); it only grows across runs.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    sys.exit(main())
