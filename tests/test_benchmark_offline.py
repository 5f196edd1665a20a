"""benchmarks/offline_reconcile.py at a tiny n: its lines parse and find what it expects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration

RUN_KEYS = {
    "run",
    "n",
    "differing",
    "wall_s",
    "cpu_s",
    "peak_rss_mib",
    "exit",
    "max_source_bytes",
    "findings_by_code",
    "floor_s",
    "floor_differing",
    "ratio_to_floor",
    "findings_expected_by_code",
    "findings_match",
}


def test_two_runs_and_their_medians_find_what_they_expect(tmp_path: Path) -> None:
    # n=40, 5 %: each side holds two certificates the other lacks.
    args = ["--n", "40", "--differ", "0.05", "--runs", "2", "--workdir", str(tmp_path)]
    bench = [sys.executable, str(ROOT / "benchmarks" / "offline_reconcile.py"), *args]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    *runs, median = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["run"] for line in runs] == [1, 2]
    for line in runs:
        assert set(line) == RUN_KEYS
        assert line["findings_by_code"] == {"missing-at-root": 2, "missing-at-subordinate": 2}
        assert line["findings_match"] and line["exit"] == 1  # missing certificates are errors
        assert line["floor_differing"] == [2, 2] and line["peak_rss_mib"] > 0
        assert line["max_source_bytes"] is None  # the default cap holds both lists
    assert median["median_of_runs"] == 2 and median["findings_match"] is True
    assert median["wall_s"] == pytest.approx((runs[0]["wall_s"] + runs[1]["wall_s"]) / 2)
    assert (tmp_path / "cache" / "certs.pem").exists()  # kept for the next run
