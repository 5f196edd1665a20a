"""What stops a daemon process at start: loose private key files and a bad `metrics_listen`.

Each case starts the real `invsync agent run` or `invsync server run` process and pins its exit
status and the whole error line, which names the configuration file and key path. None of them
needs a running server: every check happens before the agent connects or the server listens.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from invsync.server.localfed import command

pytestmark = pytest.mark.integration
HINT = "hint: Fix the named key in the configuration file; `invsync --help` lists the commands.\n"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another socket is listening on for the test's duration."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _run(fed: Path, daemon: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(daemon, "run", "--config", str(config), *(["--once"] if daemon == "agent" else [])),
        cwd=fed,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _set(config: Path, table: str, line: str) -> None:
    """Add `line` as the first key of `[table]`."""
    text = config.read_text()
    assert f"[{table}]\n" in text
    config.write_text(text.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1))


def _refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.endswith(f"error: {message}\n{HINT}"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("daemon", "file", "key_path", "relative", "mode", "shown"),
    [
        ("agent", "secom.toml", "agent.signing_key", "keys/secom.key", 0o640, "0640"),
        ("agent", "secom.toml", "server.key", "tls/secom.key", 0o604, "0604"),
        ("server", "server.toml", "server.signing_key", "keys/server.key", 0o640, "0640"),
        ("server", "server.toml", "tls.key", "tls/server.key", 0o660, "0660"),
    ],
)
def test_a_private_key_open_to_others_stops_the_daemon_before_it_writes(
    fed: Path, daemon: str, file: str, key_path: str, relative: str, mode: int, shown: str
) -> None:
    (fed / relative).chmod(mode)
    config = fed / file
    _refused(
        _run(fed, daemon, config),
        f"{config}: {key_path}: file {fed / relative} is open to group or others (mode {shown}); "
        "chmod 600 it",
    )
    assert not (fed / "state").exists()  # no database, not even its lock file


EACH_DAEMON = pytest.mark.parametrize(
    ("daemon", "file", "table"),
    [("agent", "secom.toml", "agent"), ("server", "server.toml", "server")],
)


def _metrics_listen_refused(fed: Path, daemon: str, file: str, table: str, value: str) -> str:
    """The daemon's problem with `metrics_listen = value`, after checking how it was refused."""
    config = fed / file
    _set(config, table, f'metrics_listen = "{value}"')
    proc = _run(fed, daemon, config)
    prefix = f"error: {config}: {table}.metrics_listen: "
    assert prefix in proc.stderr, proc.stderr
    problem = proc.stderr.split(prefix, 1)[1].split("\n", 1)[0]
    _refused(proc, f"{config}: {table}.metrics_listen: {problem}")
    assert not (fed / "state" / f"{file.removesuffix('.toml')}.db").exists()
    return problem


@EACH_DAEMON
@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:99999", ":9464"])
def test_an_invalid_metrics_listen_stops_the_daemon_naming_the_key(
    fed: Path, daemon: str, file: str, table: str, value: str
) -> None:
    problem = _metrics_listen_refused(fed, daemon, file, table, value)
    assert problem == f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}"
    assert not (fed / "state").exists()  # refused while loading, before the lock


@EACH_DAEMON
def test_a_metrics_port_in_use_stops_the_daemon_naming_the_address(
    fed: Path, taken_port: int, daemon: str, file: str, table: str
) -> None:
    problem = _metrics_listen_refused(fed, daemon, file, table, f"127.0.0.1:{taken_port}")
    assert problem == f"cannot listen on 127.0.0.1:{taken_port}: Address already in use"


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text, f"{old!r} not in {config}"
    config.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("daemon", "file", "old", "new", "problem"),
    [
        (
            "agent",
            "secom.toml",
            "[server]\n",
            "[server]\nadress = 1\n",
            "server.adress: unknown key",
        ),
        (
            "agent",
            "secom.toml",
            "[agent]\n",
            '[agent]\nrpc_timeout_seconds = "10"\n',
            "agent.rpc_timeout_seconds: expected int, got str",
        ),
        ("agent", "secom.toml", 'party = "secom"\n', "", "agent.party: missing"),
        ("server", "server.toml", "[tls]\n", "[tls]\nciphers = 1\n", "tls.ciphers: unknown key"),
        (
            "server",
            "server.toml",
            "[server]\n",
            "[server]\nmax_snapshot_bytes = 1.5\n",
            "server.max_snapshot_bytes: expected int, got float",
        ),
        ("server", "server.toml", 'listen = "127.0.0.1:0"\n', "", "server.listen: missing"),
        (
            "server",
            "server.toml",
            'client_ca = "tls/ca.pem"\n',
            "",
            "tls.client_ca: missing",  # no TLS without client authentication
        ),
    ],
    ids=[
        "agent-unknown-key",
        "agent-wrong-type",
        "agent-missing-key",
        "server-unknown-key",
        "server-wrong-type",
        "server-missing-key",
        "server-no-client-auth",
    ],
)
def test_a_bad_configuration_stops_the_daemon_naming_the_key_path(
    fed: Path, daemon: str, file: str, old: str, new: str, problem: str
) -> None:
    config = fed / file
    _edit(config, old, new)
    _refused(_run(fed, daemon, config), f"{config}: {problem}")
    assert not (fed / "state").exists()


@pytest.mark.parametrize(
    ("daemon", "file", "key_path", "missing"),
    [
        ("agent", "jprs.toml", "peers.secom.signing_keys[0]", "keys/secom.pub"),
        ("agent", "secom.toml", "server.ca", "tls/ca.pem"),
        ("server", "server.toml", "parties.jprs.signing_keys[0]", "keys/jprs.pub"),
        ("server", "server.toml", "tls.cert", "tls/server.crt"),
    ],
)
def test_a_missing_file_stops_the_daemon_naming_the_key_path(
    fed: Path, daemon: str, file: str, key_path: str, missing: str
) -> None:
    (fed / missing).unlink()
    config = fed / file
    _refused(_run(fed, daemon, config), f"{config}: {key_path}: file not found: {fed / missing}")
    assert not (fed / "state").exists()
