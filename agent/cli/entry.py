"""Running the `invsync` command group: how failures reach the terminal and the exit status.

`server/cli.py` builds the group and is the console entry point, because `agent` never imports
`server`.
"""

from __future__ import annotations

import sys

import click

from invsync.agent.errors import InvsyncError
from invsync.agent.telemetry.logs import setup_logging


def run_cli(group: click.Group) -> None:
    """Run `group`, turning every InvsyncError into its diagnostics and exit status 2."""
    setup_logging()
    try:
        status = group.main(standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except InvsyncError as e:
        click.echo(e.diagnostics(), err=True)
        sys.exit(2)
    # Outside standalone mode click returns the status of `ctx.exit(status)` instead of exiting;
    # a command that finishes normally returns None.
    sys.exit(status if isinstance(status, int) else 0)
