"""Issue 12: an agent whose server is down could not run: exit 3, with no traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from invsync.server.localfed import agent_config, command, write_federation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_agent_run_once_with_the_server_down_exits_3(tmp_path: Path) -> None:
    write_federation(tmp_path)
    config = tmp_path / "jprs.toml"
    config.write_text(agent_config("jprs", _free_port()))
    proc = subprocess.run(
        command("agent", "run", "--config", str(config), "--once", "--wait", "0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "hint: Check that the exchange server is running" in proc.stderr
