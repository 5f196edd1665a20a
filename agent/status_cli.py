"""`invsync status`: each pairing of an agent at a glance."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from agent.backoff import RetryPolicy
from agent.cli_options import config_option, format_option
from agent.client import ExchangeClient, NotFoundYet
from agent.config import AgentConfig, load_agent_config
from agent.status import Probe, pairing_status, status_text
from agent.store import AgentStore

PROBE_SECONDS = 5.0


@click.command("status")
@config_option("The agent's TOML configuration.", required=True)
@click.option("--offline", is_flag=True, help="Do not ask the exchange server.")
@format_option("text", "json")
def status_command(config_path: Path, offline: bool, fmt: str) -> None:
    """Show each pairing: the last snapshot (version, age, expiry), a snapshot awaiting its
    receipt, the latest report (signatures, open and acknowledged findings), and whether the
    exchange server answers (one try, no retries)."""
    config = load_agent_config(config_path)
    client = None if offline else _client(config)
    probe = None if client is None else _probe(client)
    now = datetime.now(UTC)
    try:
        with AgentStore(config.database, create=False) as store:
            rows = [pairing_status(config, store, name, now, probe) for name in config.pairings]
    finally:
        if client is not None:
            client.close()
    click.echo(json.dumps(rows, indent=2) if fmt == "json" else status_text(rows), nl=False)
    if fmt == "json":
        click.echo()


def _client(config: AgentConfig) -> ExchangeClient:
    return ExchangeClient(config.server, timeout=PROBE_SECONDS, retry=RetryPolicy(retries=0))


def _probe(client: ExchangeClient) -> Probe:
    def probe(pairing: str) -> str:
        try:
            report = client.report(pairing)
        except NotFoundYet:
            return f"reachable at {client.address} (no report yet)"
        return f"reachable at {client.address} (latest report {report.report_id[:12]})"

    return probe
