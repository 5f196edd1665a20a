"""deploy/: the systemd units, the container image and compose file, the example configs.

No Docker engine runs where this is developed, so the image is checked by reading the
Dockerfile's instructions and by running its ENTRYPOINT + CMD as `python -m invsync.server.cli ARGS
--help`; compose.yaml is read with the small parser below (it is kept to block mappings and
lists, and PyYAML is not a dependency). The units are parsed here, and also given to
`systemd-analyze verify` when that exists. The example configs are loaded by the real loaders
after their /etc/invsync and /var/lib/invsync paths are moved into a tmp federation.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from invsync.agent.config.keyfiles import check_agent_keys
from invsync.agent.config.settings import load_agent_config
from invsync.server.config import load_server_config
from invsync.server.config_cli import check_server_keys
from invsync.server.localfed import write_federation
from tests.paths import ROOT

DEPLOY = ROOT / "deploy"
UNITS = ("invsync-server.service", "invsync-agent@.service")
HARDENING = {
    "User": "invsync",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "StateDirectory": "invsync",
    "ReadOnlyPaths": "/etc/invsync",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallFilter": "@system-service",
    "Restart": "on-failure",
    "KillSignal": "SIGTERM",
}

# --- systemd ------------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    """Sections of a unit file; a repeated key keeps its last value, as systemd does here."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number} is outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"line {number} is not KEY=VALUE: {raw!r}"
        current[key.strip()] = value.strip()
    return sections


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(unit: str) -> None:
    service = parse_unit((DEPLOY / unit).read_text())["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{unit}: {key}={service.get(key)!r}, want {value!r}"
    assert int(service["TimeoutStopSec"]) > 0
    assert "ReadWritePaths" not in service, "the state directory must be the only writable path"


def test_units_run_the_documented_commands() -> None:
    server = parse_unit((DEPLOY / "invsync-server.service").read_text())["Service"]
    agent = parse_unit((DEPLOY / "invsync-agent@.service").read_text())["Service"]
    assert server["ExecStart"] == (
        "/opt/invsync/bin/invsync server run --config /etc/invsync/server.toml"
    )
    assert agent["ExecStart"].startswith(
        "/opt/invsync/bin/invsync agent run --config /etc/invsync/agent-%i.toml"
    )
    for party in ("secom", "jprs"):
        assert (DEPLOY / f"agent-{party}.toml").exists()


@pytest.mark.parametrize("args", [["server", "run"], ["agent", "run"]])
def test_unit_command_lines_are_accepted(args: list[str], tmp_path: Path) -> None:
    """The unit's options exist: the CLI would refuse an unknown one with status 2."""
    name = "invsync-server.service" if args[0] == "server" else "invsync-agent@.service"
    exec_start = parse_unit((DEPLOY / name).read_text())["Service"]["ExecStart"].split()
    options = exec_start[3:]
    assert exec_start[1:3] == args
    result = subprocess.run(
        [sys.executable, "-m", "invsync.server.cli", *args, *options, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify(unit: str, tmp_path: Path) -> None:
    """`/opt/invsync/bin/invsync` does not exist here, so ExecStart points at this Python.

    The project's machine image ships systemd; without it this test fails rather than skips,
    because a skipped check would prove nothing."""
    assert shutil.which("systemd-analyze"), "systemd-analyze not found: apt-get install systemd"
    text = (DEPLOY / unit).read_text().replace("/opt/invsync/bin/invsync", sys.executable)
    target = tmp_path / unit.replace("@.", "@secom.")
    target.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(target)], capture_output=True, text=True, check=False
    )
    ours = [line for line in result.stderr.splitlines() if target.name in line]
    assert result.returncode == 0 and not ours, result.stderr


# --- the container image ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def _one(instructions: list[tuple[str, str]], word: str) -> tuple[int, str]:
    found = [(i, args) for i, (w, args) in enumerate(instructions) if w == word]
    assert len(found) == 1, f"want one {word}, found {found}"
    return found[0]


def test_dockerfile_installs_the_project_as_non_root() -> None:
    steps = dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    copied = {args.split()[0] for word, args in steps if word == "COPY"}
    assert {"agent", "server", "protos"} <= copied
    assert any(w == "COPY" and "pyproject.toml" in a.split() for w, a in steps)
    assert any(w == "RUN" and a.startswith("pip install .") for w, a in steps)
    user_at, user = _one(steps, "USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    entry_at, entry = _one(steps, "ENTRYPOINT")
    assert user_at < entry_at
    assert json.loads(entry) == ["invsync"]
    _, volume = _one(steps, "VOLUME")
    assert volume == "/var/lib/invsync"


def test_dockerfile_copies_only_what_exists() -> None:
    for word, args in dockerfile():
        if word == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"


def test_the_image_entrypoint_and_cmd_run() -> None:
    """ENTRYPOINT ["invsync"] is the console script `invsync.server.cli:console`; CMD are its
    arguments."""
    steps = dockerfile()
    cmd = json.loads(_one(steps, "CMD")[1])
    assert cmd[:2] == ["server", "run"]
    result = subprocess.run(
        [sys.executable, "-m", "invsync.server.cli", *cmd, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout


# --- compose ------------------------------------------------------------------------------------

Node = dict[str, "Node"] | list[str] | str


def parse_compose(text: str) -> Node:
    """The YAML subset compose.yaml is written in: block mappings, block lists of scalars,
    plain or double-quoted scalars and `{}`. Anything else fails the test."""
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip())
        for raw in text.splitlines()
        if raw.strip() and not raw.lstrip().startswith("#")
    ]

    def scalar(value: str) -> str:
        assert "#" not in value and not value.startswith(("[", "'", "&", "*", "|", ">"))
        return json.loads(value) if value.startswith('"') else value

    def block(start: int, indent: int) -> tuple[Node, int]:
        if lines[start][1].startswith("- "):
            items: list[str] = []
            while start < len(lines) and lines[start][0] == indent:
                assert lines[start][1].startswith("- "), lines[start]
                items.append(scalar(lines[start][1][2:]))
                start += 1
            return items, start
        mapping: dict[str, Node] = {}
        while start < len(lines) and lines[start][0] == indent:
            key, sep, value = lines[start][1].partition(":")
            assert sep and not key.startswith("- "), lines[start]
            start += 1
            value = value.strip()
            if value == "{}":
                mapping[key] = {}
            elif value:
                mapping[key] = scalar(value)
            else:
                assert start < len(lines) and lines[start][0] > indent, f"{key}: empty"
                mapping[key], start = block(start, lines[start][0])
        return mapping, start

    node, end = block(0, 0)
    assert end == len(lines), f"unparsed from {lines[end]}"
    return node


def compose() -> dict[str, Node]:
    node = parse_compose((DEPLOY / "compose.yaml").read_text())
    assert isinstance(node, dict)
    return node


def _services() -> dict[str, dict[str, Node]]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return {name: s for name, s in services.items() if isinstance(s, dict)}


def test_compose_runs_a_server_and_two_agents_on_one_volume() -> None:
    services = _services()
    assert set(services) == {"init", "server", "secom", "jprs"}
    build = services["init"]["build"]
    assert isinstance(build, dict) and build["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / str(build["context"]) / "pyproject.toml").exists()
    for service in services.values():
        assert service["volumes"] == ["state:/var/lib/invsync"]
    assert compose()["volumes"] == {"state": {}}
    assert services["server"]["command"] == [
        "server",
        "run",
        "--config",
        "/var/lib/invsync/demo/server.toml",
    ]
    for party in ("secom", "jprs"):
        command = services[party]["command"]
        assert isinstance(command, list)
        assert command[:4] == ["agent", "run", "--config", f"/var/lib/invsync/demo/{party}.toml"]
        # The demo certificate names localhost: the agents must share the server's network.
        assert services[party]["network_mode"] == "service:server"


@pytest.mark.parametrize("service", ["server", "secom", "jprs"])
def test_compose_commands_are_accepted_by_the_cli(service: str) -> None:
    command = _services()[service]["command"]
    assert isinstance(command, list)
    result = subprocess.run(
        [sys.executable, "-m", "invsync.server.cli", *command, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_init_writes_a_federation_the_services_load(tmp_path: Path) -> None:
    init = _services()["init"]["entrypoint"]
    assert isinstance(init, list) and init[0] == "python"
    assert init[1] == "/usr/local/share/invsync/compose_init.py"
    assert ("COPY", f"deploy/compose_init.py {init[1]}") in dockerfile()
    work = tmp_path / "demo"
    run = [sys.executable, str(DEPLOY / "compose_init.py"), str(work)]
    subprocess.run(run, check=True, cwd=ROOT, capture_output=True)
    server = load_server_config(work / "server.toml")
    assert server.listen == "127.0.0.1:7443"
    check_server_keys(server)  # the daemons' start-up check: private keys 0600, all loadable
    for party in ("secom", "jprs"):
        agent = load_agent_config(work / f"{party}.toml")
        assert agent.server.address == "localhost:7443"
        check_agent_keys(agent)
    again = subprocess.run(run, check=True, cwd=ROOT, capture_output=True, text=True)
    assert "already set up" in again.stdout


def test_the_compose_parser_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(AssertionError):
        parse_compose("services:\n  a: [x, y]\n")
    with pytest.raises(AssertionError):
        parse_compose("a:\n  - x\n  b: y\n")


# --- example configurations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "load"),
    [
        ("server.toml", load_server_config),
        ("agent-secom.toml", load_agent_config),
        ("agent-jprs.toml", load_agent_config),
    ],
)
def test_example_configs_load(name: str, load: Callable[[Path], object], tmp_path: Path) -> None:
    write_federation(tmp_path)
    text = (DEPLOY / name).read_text()
    assert "/etc/invsync/" in text and "/var/lib/invsync/" in text
    text = text.replace("/var/lib/invsync/", f"{tmp_path}/state/")
    text = text.replace("/etc/invsync/", f"{tmp_path}/")
    (tmp_path / name).write_text(text)
    config = load(tmp_path / name)
    database = getattr(config, "database", None)
    assert database is not None and Path(database).parent == tmp_path / "state"


def test_operations_guide_names_the_deploy_files() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    readme = (DEPLOY / "README.md").read_text()
    for name in ("invsync-server.service", "invsync-agent@.service", "compose.yaml"):
        assert name in guide or name in readme, name
