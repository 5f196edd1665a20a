"""The `invsync` console entry point: every command, agent and server."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from invsync.agent.cli.entry import EXIT_CODES_HELP, run_cli
from invsync.agent.gc_pause import ends_with_command

# Each command's module is imported when the command runs (or shows its help), not at every
# start: `invsync server run` need not load the agent's daemon, nor `agent run` the reports.
LAZY: dict[str, str] = {
    "agent": "invsync.agent.cli.agent:agent_group",
    "config": "invsync.server.config_cli:config_group",
    "evidence": "invsync.server.evidence_cli:evidence_command",
    "incident": "invsync.agent.cli.incident:incident_group",
    "inventory": "invsync.agent.cli.inventory:inventory_group",
    "keys": "invsync.agent.cli.keys:keys_group",
    "notify": "invsync.agent.cli.notify:notify_group",
    "reconcile": "invsync.agent.cli.reconcile:reconcile_command",
    "report": "invsync.agent.cli.report:report_group",
    "rules": "invsync.agent.cli.rules:rules_command",
    "status": "invsync.agent.cli.status:status_command",
    "tls": "invsync.agent.cli.tls:tls_group",
}


# Each lazy command's help up to its first blank line, for `invsync --help` to list them
# without importing them all (tests/test_cli_lazy.py holds each to the command's own).
SUMMARIES: dict[str, str] = {
    "agent": "Run the inventory agent of one party.",
    "config": "Check agent and server configuration files.",
    "evidence": "Export and verify evidence bundles of the exchange's transparency log.",
    "incident": "Draft incident reports from findings.",
    "inventory": "Import, list, show and export a party's inventory of CA certificates.",
    "keys": "Create and inspect snapshot and report signing keys.",
    "notify": "Try the notification channels of an agent's configuration.",
    "reconcile": (
        "Compare two parties' CA certificate lists offline, with no server and no configuration."
    ),
    "report": "Verify, list, show and compare signed reconciliation reports.",
    "rules": "List every finding code with its severity, policy, description and what to do.",
    "status": (
        "Show each pairing: our last snapshot and the peer's (version, age, expiry), a snapshot"
        " awaiting its receipt, the latest report (signatures, open and acknowledged findings),"
        " and whether the exchange server answers (one try, no retries)."
    ),
    "tls": "The federation's TLS certificates: a CA that keeps its key, requests, signing.",
}


class LazyGroup(click.Group):
    """A group whose subcommands named in `lazy` ("module:attribute") are imported on use, and
    listed by their `summaries` without being imported."""

    def __init__(
        self, *args: object, lazy: dict[str, str], summaries: dict[str, str], **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy
        self.summaries = summaries

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click lists commands, with a lazy one's short help made from its summary."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = [(name, self._short_help(ctx, name, limit)) for name in names]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def _short_help(self, ctx: click.Context, name: str, limit: int) -> str:
        if name in self.lazy:  # shortened as click shortens a command's own help
            return click.Command(name, help=self.summaries[name]).get_short_help_str(limit)
        command = super().get_command(ctx, name)
        return command.get_short_help_str(limit) if command is not None else ""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            return _load(self.lazy[cmd_name])
        return super().get_command(ctx, cmd_name)


def _load(spec: str) -> click.Command:
    module, _, attribute = spec.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{spec} is not a click command")
    return command


SERVER_CONFIG = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The server's TOML configuration.",
)


@click.group(cls=LazyGroup, lazy=LAZY, summaries=SUMMARIES, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="invsync")
def invsync() -> None:
    """invsync: keep a root CA operator's and a subordinate operator's lists of CA certificates
    in sync, over signed snapshots exchanged through a mutual-TLS gRPC server."""


@invsync.group("server")
def server_group() -> None:
    """Run the exchange server."""


@server_group.command("run")
@SERVER_CONFIG
def server_run(config_path: Path) -> None:
    """Serve the exchange over mutual TLS until SIGTERM or SIGINT."""
    from invsync.agent.daemon.config_watch import ConfigWatch
    from invsync.server.config import load_server_config
    from invsync.server.config_cli import check_server_keys
    from invsync.server.daemon import serve_forever

    watch = ConfigWatch(config_path)  # before the load: a change from now on is a reload
    config = load_server_config(config_path)
    check_server_keys(config)  # before the lock: a refused start leaves nothing behind
    serve_forever(config, watch)


@server_group.command("reset-chain")
@SERVER_CONFIG
@click.option("--party", required=True, help="The party whose chain is reset.")
@click.option("--pairing", required=True, help="The pairing of that chain.")
@click.option(
    "--continue-from",
    "continues_from",
    required=True,
    type=click.IntRange(min=0),
    help="The last good version: the party's next snapshot follows it (0: start again).",
)
@click.option(
    "--reason",
    required=True,
    help="Why, for the log and the auditors (for example an incident number).",
)
def server_reset_chain(
    config_path: Path, party: str, pairing: str, continues_from: int, reason: str
) -> None:
    """Set aside a party's snapshots above a version, after a misuse of its signing key.

    Stop the server first, and replace the misused key in its configuration. The snapshots set
    aside stay in the transparency log, followed by a CHAIN_RESET entry the server signs; the
    party's next snapshot follows --continue-from. See docs/operations.md.
    """
    from invsync.server.chain_reset import reset_chain
    from invsync.server.config import load_server_config

    config = load_server_config(config_path)
    done = reset_chain(
        config, party=party, pairing=pairing, continues_from=continues_from, reason=reason
    )
    click.echo(f"{done.reset.describe()}; logged as entry {done.logged.index}")
    if done.report_id:
        click.echo(f"new report of {pairing}: {done.report_id}")
    for keyid in done.still_configured:
        click.echo(
            f"warning: key {keyid[:16]} signed a snapshot set aside and is still in "
            f"parties.{party}.signing_keys of {config_path}: replace it before the server "
            "starts, or it can push again",
            err=True,
        )


@server_group.group("keys")
def server_keys_group() -> None:
    """The exchange server's signing key."""


@server_keys_group.command("rotate")
@SERVER_CONFIG
@click.option(
    "--new-key",
    "new_key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The new signing key (private, from `invsync keys generate`).",
)
def server_keys_rotate(config_path: Path, new_key: Path) -> None:
    """Announce a new server signing key in the transparency log, signed by the old and the new.

    Stop the server first. The SERVER_KEY entry names the new key, signed by the configured
    server.signing_key and by --new-key; then set server.signing_key to --new-key and start the
    server. Agents that pinned the old key follow the announcement with no change to their
    configuration. See docs/operations.md.
    """
    from invsync.server.config import load_server_config
    from invsync.server.server_keys import rotate_server_key

    config = load_server_config(config_path)
    done = rotate_server_key(config, new_key)
    announced = done.announcement
    click.echo(
        f"server {announced.server}: key {announced.new_key.keyid} announced in log entry "
        f"{done.logged.index}, replacing {announced.old_key.keyid}"
    )
    click.echo(
        f"next: set server.signing_key = {str(new_key)!r} in {config_path}, then start the server"
    )


@invsync.command("demo")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write the federation, configs, databases and reports "
    "(default: a new temporary directory, kept).",
)
def demo(workdir: Path | None) -> None:
    """Run the two-organization demo: SECOM and JPRS as of early 2021, on loopback."""
    from invsync.server.demo import run_demo

    run_demo(workdir)


def main() -> None:
    """Run the `invsync` command group in this process (tests call it in theirs)."""
    run_cli(invsync)


def console() -> None:
    """The console script `invsync` and `python -m invsync.server.cli`: the process ends with
    its command, so a one-shot command freezes what is left instead of collecting it
    (agent.gc_pause)."""
    ends_with_command()
    main()


if __name__ == "__main__":
    console()
