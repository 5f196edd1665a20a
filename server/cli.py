"""The `invsync` console entry point: every command, agent and server."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli import agent_group, reconcile_command, run_cli
from agent.incident_cli import incident_group
from agent.inventory_cli import inventory_group
from agent.keys_cli import keys_group
from agent.report_cli import report_group
from agent.rules_cli import rules_command
from agent.status_cli import status_command
from agent.tls_cli import tls_group
from server.config_cli import config_group


@click.group()
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
    from server.config import load_server_config
    from server.config_cli import check_server_keys
    from server.daemon import serve_forever

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
    from server.demo import run_demo

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


def main() -> None:
    run_cli(invsync)


if __name__ == "__main__":
    main()
