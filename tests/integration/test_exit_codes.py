"""Issue 12: an agent whose server is down could not run: exit 3, with no traceback."""

from __future__ import annotations

import json
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


def _status(tmp_path: Path, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("status", "--config", str(config), *extra),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_with_the_server_down_exits_3_and_names_it(tmp_path: Path) -> None:
    write_federation(tmp_path)
    port = _free_port()  # nothing listens there: the server is down, or the port is wrong
    config = tmp_path / "secom.toml"
    config.write_text(agent_config("secom", port))
    subprocess.run(  # status reads the agent's database; an import creates it, no server needed
        command("inventory", "import", "--config", str(config), "data/secom_roots.pem"),
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    address = f"127.0.0.1:{port}"

    proc = _status(tmp_path, config)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"error: cannot reach the exchange server at {address}; the status above lacks the "
        f"server's part ({address}: unreachable since "
    ), proc.stderr
    assert "hint: Check that the exchange server runs and listens at the [server] address" in (
        proc.stderr
    )
    # What the agent holds is printed all the same, and the server line says what failed.
    assert "pairing secom-jprs\n  snapshot: none pushed yet\n" in proc.stdout
    assert f"  server: unreachable: {address}: unreachable since " in proc.stdout

    as_json = _status(tmp_path, config, "--format", "json")
    assert as_json.returncode == 3, as_json.stderr
    (row,) = json.loads(as_json.stdout)
    assert str(row["server"]).startswith(f"unreachable: {address}: ")
    assert f"error: cannot reach the exchange server at {address}" in as_json.stderr

    # Offline mode, asked for explicitly, does not ask the server: nothing could not run.
    offline = _status(tmp_path, config, "--offline")
    assert offline.returncode == 0, offline.stderr
    assert "  server: not asked (--offline)\n" in offline.stdout
    assert offline.stderr == ""
