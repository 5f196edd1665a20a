"""The agent as a daemon: a cycle at start, another on SIGHUP, a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from server.localfed import command
from tests.integration.conftest import Federation

pytestmark = pytest.mark.integration


def _wait_for(path: Path, text: str, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text()
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path}:\n{path.read_text()}")


def test_sighup_runs_a_cycle_and_sigterm_stops_cleanly(federation: Federation) -> None:
    out = federation.work / "jprs-daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    config = str(federation.work / "jprs.toml")
    with out.open("w") as log:
        daemon = subprocess.Popen(
            command("agent", "run", "--config", config, "--interval", "3600", "--wait", "3"),
            cwd=federation.work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        secom = command("agent", "run", "--config", str(federation.work / "secom.toml"), "--once")
        assert subprocess.run(secom, cwd=federation.work, timeout=120).returncode == 0
        _wait_for(out, "subordinate valid)")  # the first cycle ended fully signed
        daemon.send_signal(signal.SIGHUP)
        _wait_for(out, "jprs: pushed secom-jprs snapshot version 2")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert out.read_text().rstrip().endswith("jprs: stopped")
