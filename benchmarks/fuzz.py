"""The long fuzz campaign (docs/testing.md): every tests/fuzz property with many inputs, then the
inputs tried per entry point and the unexpected exceptions found.

    INVSYNC_FUZZ_EXAMPLES=100000 .venv/bin/python benchmarks/fuzz.py [--jobs 2] [--only TEXT]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
MODULES = ["tests.fuzz.test_fuzz_sources", "tests.fuzz.test_fuzz_exchange"]


def _tests() -> list[tuple[str, str]]:
    return [
        (name, attr)
        for name in MODULES
        for attr in dir(importlib.import_module(name))
        if attr.startswith("test_fuzz_")
    ]


def _run(test: tuple[str, str]) -> tuple[str, dict[str, int], str]:
    from hypothesis import settings

    from tests.fuzz.mutation import TRIED

    TRIED.clear()
    module, attr = test
    func = getattr(importlib.import_module(module), attr)
    examples = int(os.environ.get("INVSYNC_FUZZ_EXAMPLES", "100000"))
    func = settings(max_examples=examples, deadline=None, database=None)(func)
    failure = ""
    try:
        func()
    except Exception:
        failure = traceback.format_exc(limit=3)
    return attr, dict(TRIED), failure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--only", default="", help="run only the properties whose name contains this text"
    )
    args = parser.parse_args()
    os.environ["INVSYNC_FUZZ"] = "long"
    start = time.monotonic()
    totals: dict[str, int] = {}
    failures: list[tuple[str, str]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        chosen = [test for test in _tests() if args.only in test[1]]
        for attr, tried, failure in pool.map(_run, chosen):
            for entry, count in tried.items():
                totals[entry] = totals.get(entry, 0) + count
            if failure:
                failures.append((attr, failure))
            print(f"{attr}: done, {sum(tried.values())} inputs", flush=True)
    print(f"\n{'entry point':24} inputs")
    for entry, count in sorted(totals.items()):
        print(f"{entry:24} {count}")
    print(f"{'total':24} {sum(totals.values())}")
    print(f"unexpected exceptions: {len(failures)}; {time.monotonic() - start:.0f} s")
    for attr, failure in failures:
        print(f"--- {attr}\n{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
