"""The agent as a daemon: a cycle at start, another on SIGHUP, a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.server.localfed import agent_config, command, write_federation
from tests.integration.conftest import Federation, wait_for

pytestmark = pytest.mark.integration


def _drop_last_certificate(pem: Path) -> None:
    """JPRS's repository loses a certificate: the inventory changed."""
    marker = "-----BEGIN CERTIFICATE-----"
    text = pem.read_text()
    pem.write_text(text[: text.rindex(marker)])


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
        assert subprocess.run(secom, cwd=federation.work, timeout=120).returncode == EXIT_FINDINGS
        wait_for(out, "subordinate valid)")  # the first cycle ended fully signed
        wait_for(out, "jprs: cycle ended after ")
        assert ("s; the next in 3600 s, or at once on SIGHUP\n") in out.read_text()
        daemon.send_signal(signal.SIGHUP)
        wait_for(out, "jprs: secom-jprs unchanged since snapshot version 1 (expires ")
        _drop_last_certificate(federation.work / "data" / "jprs_ca_certificates.pem")
        daemon.send_signal(signal.SIGHUP)
        wait_for(out, "jprs: pushed secom-jprs snapshot version 2 (content changed)")
        # A SIGHUP with the configuration unchanged only runs a cycle: the agent is kept.
        assert "jprs: reloaded " not in out.read_text()
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert out.read_text().rstrip().endswith("jprs: stopped")


def test_an_interval_that_would_let_the_snapshot_expire_is_refused(tmp_path: Path) -> None:
    write_federation(tmp_path)
    (tmp_path / "jprs.toml").write_text(agent_config("jprs", 7443))
    config = tmp_path / "jprs.toml"
    proc = subprocess.run(
        command("agent", "run", "--config", str(config), "--interval", "43200"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-2] == (
        "error: --interval 43200 s is not shorter than the 43200 s between a snapshot's refresh "
        "(agent.snapshot_refresh_seconds = 43200) and its expiry "
        f"(agent.snapshot_validity_seconds = 86400) in {config}: the snapshot would expire "
        "between cycles"
    )
    assert not (tmp_path / "state" / "jprs.db").exists()
