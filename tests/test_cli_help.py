"""Every command and every option says what it is for."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from invsync.server.cli import invsync


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
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
