"""benchmarks/carry.py at a tiny n: it carries what it should, and says what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

pytestmark = pytest.mark.integration


def test_a_steady_cycle_compares_what_changed_and_carries_the_rest(tmp_path: Path) -> None:
    # n=200, 1 %: two certificates a cycle appear at both sides and leave the subordinate.
    args = ["--n", "200", "--changes", "0.01", "--runs", "2", "--workdir", str(tmp_path)]
    bench = [sys.executable, str(ROOT / "benchmarks" / "carry.py"), *args]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["changed_certificates"] == 2
    # Cycle 3: 3 * 2 missing at the subordinate, 2 disappeared from it. Compared again: the
    # 2 new, the 2 the subordinate dropped, and the 4 whose previous record changed.
    assert line["findings"] == 8
    assert (line["compared"], line["carried"]) == (8, 200 + 3 * 2 - 8)
    assert len(line["full_runs_s"]) == len(line["carried_runs_s"]) == 2
    assert line["full_s"] > 0 and line["carried_s"] > 0
