"""benchmarks/peak.py: a child's own peak resident set, not the parent's carried over at fork."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.peak import peak_command, read_peak_mib

pytestmark = pytest.mark.integration

HELD_MIB = 256


def test_the_peak_is_the_childs_own_while_wait4_reports_the_parents(tmp_path: Path) -> None:
    held = b"\x01" * (HELD_MIB << 20)  # written, so resident in this process
    peak_file = tmp_path / "peak"
    proc = subprocess.Popen(peak_command(peak_file, "--help"), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert usage.ru_maxrss / 1024 > HELD_MIB  # why the wrapper exists
    peak = read_peak_mib(peak_file)
    assert peak is not None and 10 < peak < HELD_MIB / 2
    assert len(held) == HELD_MIB << 20


def test_an_exit_code_passes_through_and_no_file_reads_as_none(tmp_path: Path) -> None:
    peak_file = tmp_path / "peak"
    done = subprocess.run(peak_command(peak_file, "no-such-command"), capture_output=True)
    assert done.returncode == 2
    assert b"No such command" in done.stderr
    assert read_peak_mib(tmp_path / "never-written") is None
