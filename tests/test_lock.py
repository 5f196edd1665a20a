"""A second daemon on the same database is refused; the lock dies with its holder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from invsync.agent.store.lock import DaemonLock, DatabaseInUse
from invsync.server.localfed import command, server_process, write_federation


def test_a_second_lock_on_the_same_database_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "state" / "server.db"
    with (
        DaemonLock(db),
        pytest.raises(
            DatabaseInUse, match=rf"{db}: another invsync daemon \(pid {os.getpid()}\) uses this"
        ),
    ):
        DaemonLock(db).__enter__()
    with DaemonLock(db) as again:  # released on exit: it can be taken again
        assert again.path == db.with_name("server.db.lock")


def test_a_second_server_process_on_the_same_database_exits_with_the_reason(
    tmp_path: Path,
) -> None:
    write_federation(tmp_path)
    with server_process(tmp_path):
        second = subprocess.run(
            command("server", "run", "--config", str(tmp_path / "server.toml")),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert second.returncode == 3  # could not run
    assert "another invsync daemon (pid " in second.stderr
    assert str(tmp_path / "state" / "server.db") in second.stderr
