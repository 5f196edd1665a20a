"""benchmarks/import_ccadb.py on two years of CCADB's PEM report: each import is followed by its
floor over the same rows, and the lines say what both read."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import FIXTURES, ROOT

pytestmark = pytest.mark.integration

YEARS = (1999, 2003)  # 1999 holds a certificate cryptography refuses: a skipped row


def _lines(tmp_path: Path) -> list[list[str]]:
    for year in YEARS:
        name = f"AllCertificatePEMsCSVFormat_NotBeforeYear_{year}.csv.gz"
        shutil.copy(FIXTURES / "ccadb" / "pems" / name, tmp_path / name)
    bench = [sys.executable, str(ROOT / "benchmarks" / "import_ccadb.py"), str(tmp_path)]
    args = ["--runs", "2", "--no-tracemalloc"]
    done = subprocess.run([*bench, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"2 files in {tmp_path}, 2 timed runs\n")
    return [line.split() for line in done.stdout.splitlines()[2:]]


def test_each_run_has_its_floor_and_the_ratio_is_of_the_medians(tmp_path: Path) -> None:
    lines = _lines(tmp_path)
    assert [line[0] for line in lines] == ["1", "floor", "2", "floor", "median", "floor", "import"]
    imported, floor = lines[4], lines[5]
    rows, records, skipped = (int(cell) for cell in imported[1:4])
    # The floor reads the same rows and keeps the same distinct certificates.
    assert [int(cell) for cell in floor[1:4]] == [rows, records, skipped]
    assert skipped > 0
    overall = float(imported[6].replace(",", "")) / float(floor[6].replace(",", ""))
    assert lines[6][:4] == ["import", "/", "floor,", "overall:"]
    assert float(lines[6][4]) == pytest.approx(overall, abs=0.002)  # rates are printed rounded
