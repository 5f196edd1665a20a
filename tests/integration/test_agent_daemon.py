"""The agent as a daemon: a cycle at start, another on SIGHUP, a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from server.localfed import command
from tests.integration.conftest import Federation, wait_for

pytestmark = pytest.mark.integration


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
        wait_for(out, "subordinate valid)")  # the first cycle ended fully signed
        daemon.send_signal(signal.SIGHUP)
        wait_for(out, "jprs: pushed secom-jprs snapshot version 2")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert out.read_text().rstrip().endswith("jprs: stopped")
