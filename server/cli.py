"""The `invsync` console entry point: every command, agent and server."""

from __future__ import annotations

from pathlib import Path

import click

from invsync.agent.cli.agent import agent_group
from invsync.agent.cli.entry import EXIT_CODES_HELP, run_cli
from invsync.agent.cli.evidence import evidence_group
from invsync.agent.cli.incident import incident_group
from invsync.agent.cli.inventory import inventory_group
from invsync.agent.cli.keys import keys_group
from invsync.agent.cli.reconcile import reconcile_command
from invsync.agent.cli.report import report_group
from invsync.agent.cli.rules import rules_command
from invsync.agent.cli.status import status_command
from invsync.agent.cli.tls import tls_group
from invsync.server.config_cli import config_group
from invsync.server.evidence_export import export_from_server


@click.group(epilog=EXIT_CODES_HELP)
@click.version_option(package_name="invsync")
def invsync() -> None:
    """invsync: keep a root CA operator's and a subordinate operator's lists of CA certificates
    in sync, over signed snapshots exchanged through a mutual-TLS gRPC server."""


@invsync.group("server")
def server_group() -> None:
    """Run the exchange server."""


@server_group.command("run")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The server's TOML configuration.",
)
def server_run(config_path: Path) -> None:
    """Serve the exchange over mutual TLS until SIGTERM or SIGINT."""
    from invsync.server.config import load_server_config
    from invsync.server.config_cli import check_server_keys
    from invsync.server.daemon import serve_forever

    config = load_server_config(config_path)
    check_server_keys(config)  # before the lock: a refused start leaves nothing behind
    serve_forever(config)


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


invsync.add_command(agent_group)
invsync.add_command(inventory_group)
invsync.add_command(incident_group)
invsync.add_command(rules_command)
invsync.add_command(status_command)
invsync.add_command(keys_group)
invsync.add_command(tls_group)
invsync.add_command(config_group)
invsync.add_command(reconcile_command)
invsync.add_command(report_group)
# The agent's evidence commands, with the export that reads the server's own database.
invsync.add_command(evidence_group(server_export=export_from_server))


def main() -> None:
    run_cli(invsync)


if __name__ == "__main__":
    main()
