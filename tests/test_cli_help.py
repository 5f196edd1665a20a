"""Every command and every option says what it is for."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from invsync.server.cli import invsync


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    # As click lists them for --help: the top level imports each command's module on use.
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, (*path, name)
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(invsync))


def test_the_tree_is_what_the_readme_lists() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {
        "agent run",
        "demo",
        "incident draft",
        "inventory import",
        "inventory list",
        "inventory show",
        "inventory export",
        "reconcile",
        "report verify",
        "report list",
        "report show",
        "report diff",
        "rules",
        "server run",
        "keys generate",
        "keys show",
        "tls init",
        "config check",
        "status",
    } <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or "").strip(), path
    result = CliRunner().invoke(invsync, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: invsync " + " ".join(path) in result.output
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help or (param.is_flag and param.name == "help"), (path, param.name)


def test_a_command_loads_only_what_it_needs() -> None:
    """`invsync server run --help` in a fresh process imports no agent daemon or report code,
    and `invsync --help` still lists every command (importing each module for its help)."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from invsync.server.cli import invsync\n"
        "result = CliRunner().invoke(invsync, ['server', 'run', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "loaded = [m for m in ('invsync.agent.daemon.cycle', 'invsync.agent.cli.report',\n"
        "          'invsync.agent.cli.reconcile') if m in sys.modules]\n"
        "print(loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    listed = CliRunner().invoke(invsync, ["--help"]).output
    for name in ("agent", "evidence", "reconcile", "report", "server", "tls"):
        assert f"  {name} " in listed
