"""Offline `invsync reconcile` of two large lists, against a fingerprint set operation on them.

    .venv/bin/python benchmarks/offline_reconcile.py [--n 100000] [--differ 0.001] [--runs 3]
        [--workdir DIR]

Issue 13, item 5 ("the offline reconcile as a sort-merge or set operation on fingerprints in
bounded memory"; target: 1,000,000 against 1,000,000 in at most 60 s and 1 GiB). The
certificates are the pairing benchmark's synthetic P-256 subordinate CA certificates
(`benchmarks/pairing.py`, cached under DIR/cache, so a second run reuses them). The root's list
is certificates [0, n), the subordinate's [k, n + k) with k = --differ * n: each side holds k the
other lacks, so the comparison must find exactly k `missing-at-subordinate` and k
`missing-at-root` findings.

Each run starts `invsync reconcile --root A --subordinate B --format json` as its own process and
takes its wall time and CPU time (wait4) and its own peak resident set (VmHWM, written at exit
by benchmarks/peak.py: wait4's ru_maxrss would include this process's, carried over at fork);
then, in this process, the floor: both
files' PEM blocks base64-decoded and SHA-256 hashed into two sets, and their differences taken.
Prints one JSON object per run, then one with the medians (keys in benchmarks/README.md). A
findings count other than the expected one is printed, never raised: it is a finding of the
benchmark.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from invsync.agent.sources.reading import DEFAULT_MAX_SOURCE_BYTES

if __package__ in (None, ""):  # run as a script: the project root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pairing import PEM_END, load_pool, per_cycle
from benchmarks.peak import peak_command, read_peak_mib

EXPECTED_CODES = ("missing-at-root", "missing-at-subordinate")
RUN_SECONDS = 3600.0


class BenchError(Exception):
    """The reconcile process failed; the message holds what it printed."""


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="invsync-offline-"))
    k = per_cycle(args.n, args.differ)  # at least one whenever a fraction is asked for
    pool = load_pool(workdir / "cache", args.n + k)
    root, sub = workdir / "root.pem", workdir / "subordinate.pem"
    root.write_text("".join(pool.certs[: args.n]))
    sub.write_text("".join(pool.certs[k : args.n + k]))
    lines = []
    try:
        for index in range(1, args.runs + 1):
            line = {"run": index, "n": args.n, "differing": k, **measure(root, sub, k)}
            lines.append(line)
            print(json.dumps(line), flush=True)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(medians(lines)), flush=True)
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="certificates in each list")
    parser.add_argument(
        "--differ", type=float, default=0.001, help="fraction of n each side holds alone"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument(
        "--workdir", type=Path, help="keeps the certificate cache (default: a new temp directory)"
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1 or not 0 <= args.differ <= 1:
        parser.error("--n and --runs must be at least 1, --differ within [0, 1]")
    return args


def measure(root: Path, sub: Path, k: int) -> dict[str, object]:
    """One run: the reconcile process, then the floor over the same files."""
    reconciled = reconcile_process(root, sub)
    started = time.perf_counter()
    only_root, only_sub = floor(root, sub)
    floor_s = time.perf_counter() - started
    expected = dict.fromkeys(EXPECTED_CODES, k) if k else {}
    return {
        **reconciled,
        "floor_s": round(floor_s, 3),
        "floor_differing": [only_root, only_sub],
        "ratio_to_floor": round(float(str(reconciled["wall_s"])) / floor_s, 1),
        "findings_expected_by_code": expected,
        "findings_match": reconciled["findings_by_code"] == expected,
    }


def reconcile_process(root: Path, sub: Path) -> dict[str, object]:
    """`invsync reconcile` of the two files in its own process: its figures and findings. The
    default source size cap is raised only for lists larger than it (a million certificates
    in one PEM file take 742 MB)."""
    args = ["reconcile", "--root", str(root), "--subordinate", str(sub), "--format", "json"]
    largest = max(root.stat().st_size, sub.stat().st_size)
    cap = largest if largest > DEFAULT_MAX_SOURCE_BYTES else None
    if cap is not None:
        args += ["--max-source-bytes", str(cap)]
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as folder,
    ):
        peak_file = Path(folder) / "peak"
        started = time.perf_counter()
        proc = subprocess.Popen(peak_command(peak_file, *args), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
        out.seek(0)
        err.seek(0)
        text, errors = out.read(), err.read().decode(errors="replace")
        peak = read_peak_mib(peak_file)
    if proc.returncode not in (0, 1):  # 1: findings of severity error, as expected here
        raise BenchError(f"invsync reconcile exited {proc.returncode}: {errors[-2000:]}")
    if peak is None:
        raise BenchError("invsync reconcile wrote no peak resident set (benchmarks/peak.py)")
    findings = json.loads(text)["findings"]
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(peak, 1),
        "exit": proc.returncode,
        "max_source_bytes": cap,
        "findings_by_code": dict(sorted(Counter(f["code"] for f in findings).items())),
    }


def floor(root: Path, sub: Path) -> tuple[int, int]:
    """What each side holds alone, by SHA-256 of each PEM block's DER: no parsing, no rules."""
    root_set, sub_set = fingerprints(root), fingerprints(sub)
    return len(root_set - sub_set), len(sub_set - root_set)


def fingerprints(path: Path) -> set[bytes]:
    text = path.read_text()
    return {
        hashlib.sha256(base64.b64decode(_body(block))).digest()
        for block in text.split(PEM_END)
        if block.strip()
    }


def _body(block: str) -> str:
    return "".join(line for line in block.splitlines() if line and not line.startswith("-----"))


def medians(lines: list[dict[str, object]]) -> dict[str, object]:
    """The median of each figure over the runs, and whether every run found what it expects."""
    figures = ("wall_s", "cpu_s", "peak_rss_mib", "floor_s", "ratio_to_floor")
    first = lines[0]
    return {
        "median_of_runs": len(lines),
        "n": first["n"],
        "differing": first["differing"],
        **{key: statistics.median(float(str(line[key])) for line in lines) for key in figures},
        "findings_match": all(line["findings_match"] for line in lines),
    }


if __name__ == "__main__":
    sys.exit(main())
