"""Running the `invsync` command group: how failures reach the terminal and the exit status.

`server/cli.py` builds the group and is the console entry point, because `agent` never imports
`server`.

The exit status is the same for every command (README "Exit codes"):

- 0 (`EXIT_OK`): done, and no finding of severity error;
- 1 (`EXIT_FINDINGS`): findings of severity error, or a verification that failed;
- 2 (`EXIT_USAGE`): a usage error or bad input (an option, an input file, a configuration);
- 3 (`EXIT_CANNOT_RUN`): could not run (the server unreachable, the store unreadable or locked
  by another daemon, an internal failure).

An error's status is that of its nearest class in `EXIT_CODES`, the one table of them. An
exception that is not an InvsyncError is a bug: it exits 3 with a one-line message, and its
traceback is printed only when the environment sets INVSYNC_TRACEBACK=1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import click

from invsync.agent.cli.outcomes import ErrorFindings, IncompleteReport, LintFindings
from invsync.agent.errors import (
    ConfigError,
    InvsyncError,
    KeyLoadError,
    ReportError,
    SignatureError,
    SourceError,
    StoreError,
    TransportError,
)
from invsync.agent.evidence.failures import CheckFailed
from invsync.agent.exchange.ca_key import KeyCommandError
from invsync.agent.exchange.ca_lock import CaBusy
from invsync.agent.exchange.ca_sign import AssemblyError
from invsync.agent.exchange.envelope import MalformedEnvelope
from invsync.agent.exchange.rejections import UntrustedInput
from invsync.agent.inventory.lint import LintUnavailable
from invsync.agent.notify.secret import SendError
from invsync.agent.store.lock import DatabaseInUse
from invsync.agent.telemetry.logs import setup_logging

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_CANNOT_RUN = 3
# Interrupted (Ctrl-C): the shells' 128 + SIGINT.
EXIT_INTERRUPTED = 130

# The one table of exit statuses; InvsyncError is the answer for every error not listed.
EXIT_CODES: Mapping[type[InvsyncError], int] = {
    InvsyncError: EXIT_USAGE,
    SourceError: EXIT_USAGE,
    ConfigError: EXIT_USAGE,
    KeyLoadError: EXIT_USAGE,
    MalformedEnvelope: EXIT_USAGE,
    SignatureError: EXIT_FINDINGS,
    ReportError: EXIT_USAGE,
    IncompleteReport: EXIT_FINDINGS,
    ErrorFindings: EXIT_FINDINGS,
    LintFindings: EXIT_FINDINGS,
    LintUnavailable: EXIT_CANNOT_RUN,  # the opt-in linter is not installed
    CheckFailed: EXIT_FINDINGS,
    UntrustedInput: EXIT_FINDINGS,
    TransportError: EXIT_CANNOT_RUN,
    StoreError: EXIT_CANNOT_RUN,
    DatabaseInUse: EXIT_CANNOT_RUN,
    KeyCommandError: EXIT_CANNOT_RUN,  # the CA's hardware key did not sign
    CaBusy: EXIT_CANNOT_RUN,
    SendError: EXIT_CANNOT_RUN,  # a notification channel did not take the event
    AssemblyError: EXIT_CANNOT_RUN,
}

# For the epilog of `invsync --help`.
EXIT_CODES_HELP = (
    "Exit codes (every command): 0 done, no error finding; 1 error findings or a failed "
    "verification; 2 usage error or bad input (option, input file, configuration); 3 could not "
    "run (server unreachable, store unreadable or locked, internal error)."
)

TRACEBACK_VARIABLE = "INVSYNC_TRACEBACK"


def exit_code_of(error: InvsyncError) -> int:
    """The exit status of `error`: that of its nearest class in `EXIT_CODES`."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_CODES[InvsyncError]


def run_cli(group: click.Group) -> None:
    """Run `group`, turning every failure into its diagnostics and exit status (`EXIT_CODES`)."""
    setup_logging()
    try:
        status = group.main(standalone_mode=False)
    except click.ClickException as e:
        # Usage errors, and click's own bad input (an unreadable file argument).
        e.show()
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except InvsyncError as e:
        click.echo(e.diagnostics(), err=True)
        sys.exit(exit_code_of(e))
    except Exception as e:
        if os.environ.get(TRACEBACK_VARIABLE) == "1":
            import traceback

            traceback.print_exc()
        click.echo(
            f"error: internal error: {type(e).__name__}: {' '.join(str(e).split())} "
            f"(a bug in invsync; set {TRACEBACK_VARIABLE}=1 for the traceback)",
            err=True,
        )
        sys.exit(EXIT_CANNOT_RUN)
    # Outside standalone mode click returns the status of `ctx.exit(status)` instead of exiting;
    # a command that finishes normally returns None.
    sys.exit(status if isinstance(status, int) else EXIT_OK)
