"""`invsync --help` lists every command without importing the lazy ones (server/cli.py): each
listed summary is the command's own short help, and a command module that cannot be imported
no longer takes the listing down with it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from invsync.server import cli


def _command(name: str) -> click.Command:
    module, _, attribute = cli.LAZY[name].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


def test_there_is_a_summary_for_each_lazy_command_and_only_for_them() -> None:
    assert set(cli.SUMMARIES) == set(cli.LAZY)


@pytest.mark.parametrize("name", sorted(cli.LAZY))
def test_each_summary_lists_as_the_commands_own_help_would(name: str) -> None:
    command = _command(name)
    summary = click.Command(name, help=cli.SUMMARIES[name])
    for limit in (20, 35, 45, 60, 80, 120, 400):
        assert summary.get_short_help_str(limit) == command.get_short_help_str(limit), limit


_LISTING = """
import sys
from click.testing import CliRunner
from invsync.server import cli
{setup}
result = CliRunner().invoke(cli.invsync, ["--help"])
print(result.exit_code)
print(result.output)
print(sorted(m for m in cli.LAZY.values() if m.partition(":")[0] in sys.modules))
"""


def _listing(setup: str = "") -> list[str]:
    code = _LISTING.format(setup=setup)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_the_listing_imports_no_lazy_command() -> None:
    lines = _listing()
    assert lines[0] == "0"
    assert lines[-1] == "[]"
    assert any(line.startswith("  reconcile  Compare two parties") for line in lines)


def test_a_command_that_cannot_be_imported_is_still_listed_and_fails_alone() -> None:
    lines = _listing('cli.LAZY["rules"] = "invsync.no_such_module:rules_command"')
    assert lines[0] == "0"
    assert any(line.startswith("  rules      List every finding code") for line in lines)
    runner = CliRunner()
    broken = dict(cli.LAZY, rules="invsync.no_such_module:rules_command")
    group = cli.LazyGroup(name="invsync", lazy=broken, summaries=cli.SUMMARIES)
    result = runner.invoke(group, ["rules"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert str(result.exception) == "No module named 'invsync.no_such_module'"
