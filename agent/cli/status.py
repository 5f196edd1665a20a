"""`invsync status`: each pairing of an agent at a glance."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from invsync.agent.cli.options import config_option, format_option
from invsync.agent.config.settings import AgentConfig, load_agent_config
from invsync.agent.daemon.report_check import pairing_trust
from invsync.agent.daemon.rotation import peer_policies, pinned_keys
from invsync.agent.daemon.status import PeerLookup, Probe, pairing_status, status_text
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.agent.store.agent_store import AgentStore

PROBE_SECONDS = 5.0


@click.command("status")
@config_option("The agent's TOML configuration.", required=True)
@click.option("--offline", is_flag=True, help="Do not ask the exchange server.")
@format_option("text", "json")
def status_command(config_path: Path, offline: bool, fmt: str) -> None:
    """Show each pairing: our last snapshot and the peer's (version, age, expiry), a snapshot
    awaiting its receipt, the latest report (signatures, open and acknowledged findings), and
    whether the exchange server answers (one try, no retries)."""
    config = load_agent_config(config_path)
    client = None if offline else _client(config)
    probe = None if client is None else _probe(client)
    now = datetime.now(UTC)
    try:
        with AgentStore(config.database, create=False) as store:
            peer = None if client is None else _peer_lookup(config, store, client)
            rows = [
                pairing_status(config, store, name, now, probe, peer) for name in config.pairings
            ]
    finally:
        if client is not None:
            client.close()
    click.echo(json.dumps(rows, indent=2) if fmt == "json" else status_text(rows), nl=False)
    if fmt == "json":
        click.echo()


def _client(config: AgentConfig) -> ExchangeClient:
    return ExchangeClient(config.server, timeout=PROBE_SECONDS, retry=RetryPolicy(retries=0))


def _peer_lookup(config: AgentConfig, store: AgentStore, client: ExchangeClient) -> PeerLookup:
    """The peer's latest snapshot, through the pairing's trusted state as a cycle sees it (so an
    older one than the last verified is refused); read-only: nothing it accepts is saved, and a
    rotation it announces is left for the next cycle to record."""

    peers = peer_policies(config)
    server_keys = pinned_keys(config.server.signing_keys)

    def lookup(name: str) -> SnapshotHeader | None:
        pairing = config.pairings[name]
        try:
            env = client.fetch_peer_snapshot(name, 0)
        except NotFoundYet:
            return None
        trust = pairing_trust(config.party, pairing, store, server_keys, peers[pairing.peer])
        # No clock: an expired snapshot is shown as such, not refused.
        return trust.update_peer(env, version=0, now=None).snapshot.header

    return lookup


def _probe(client: ExchangeClient) -> Probe:
    def probe(pairing: str) -> str:
        try:
            report = client.report(pairing)
        except NotFoundYet:
            return f"reachable at {client.address} (no report yet)"
        return f"reachable at {client.address} (latest report {report.report_id[:12]})"

    return probe
