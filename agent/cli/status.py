"""`invsync status`: each pairing of an agent at a glance.

Its exit status follows README "Exit codes": 3 (could not run) when the exchange server's part
could not be read, because the server could not be reached or refused to answer; the rest of
the status is printed first all the same. `--offline` asks the server nothing and so never
exits 3 for it. What the server answers but the agent does not trust (a peer snapshot that
fails verification) is shown in its line, as before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from invsync.agent.cli.options import config_option, format_option
from invsync.agent.config.settings import AgentConfig, exchange_client, load_agent_config
from invsync.agent.daemon.report_check import pairing_trust
from invsync.agent.daemon.rotation import peer_policies, pinned_keys
from invsync.agent.daemon.status import PeerLookup, Probe, pairing_status, status_text
from invsync.agent.errors import InvsyncError, TransportError, bounded
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet, Refused, Unreachable
from invsync.agent.exchange.rejections import MESSAGE_CHARS
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.agent.store.agent_store import AgentStore

PROBE_SECONDS = 5.0


class ServerNotRead(TransportError):
    """`invsync status` could not read the exchange server's part: it could not reach the
    server, or the server refused to answer. A TransportError, so it exits 3 (could not run)."""

    hint = (
        "Check that the exchange server runs and listens at the [server] address of the "
        "configuration, and its TLS files; `invsync status --offline` shows the agent's own "
        "state without asking the server."
    )


@click.command("status")
@config_option("The agent's TOML configuration.", required=True)
@click.option(
    "--offline",
    is_flag=True,
    help="Do not ask the exchange server: show only what the agent holds (never exit 3 for it).",
)
@format_option("text", "json")
def status_command(config_path: Path, offline: bool, fmt: str) -> None:
    """Show each pairing: our last snapshot and the peer's (version, age, expiry), a snapshot
    awaiting its receipt, the latest report (signatures, open and acknowledged findings), and
    whether the exchange server answers (one try, no retries).

    Exits 3 (could not run), after printing the rest, when the server cannot be reached or
    refuses to answer; with --offline it is not asked."""
    config = load_agent_config(config_path)
    client = None if offline else _client(config)
    failures = _Failures()
    probe = None if client is None else _probe(client, failures)
    now = datetime.now(UTC)
    try:
        with AgentStore(config.database, create=False) as store:
            peer = None if client is None else _peer_lookup(config, store, client, failures)
            rows = [
                pairing_status(config, store, name, now, probe, peer) for name in config.pairings
            ]
    finally:
        if client is not None:
            client.close()
    click.echo(json.dumps(rows, indent=2) if fmt == "json" else status_text(rows), nl=False)
    if fmt == "json":
        click.echo()
    if client is not None and failures.first is not None:
        raise _not_read(client.address, failures.first)


class _Failures:
    """What kept the server's part from being read: the first failure, and whether the server
    was unreachable (then no further call tries it: each would wait for its deadline again)."""

    def __init__(self) -> None:
        self.first: Exception | None = None
        self.unreachable: Unreachable | None = None

    def check(self) -> None:
        if self.unreachable is not None:
            raise self.unreachable

    def record(self, error: Exception) -> None:
        if self.first is None:
            self.first = error
        if isinstance(error, Unreachable) and self.unreachable is None:
            self.unreachable = error


def _not_read(address: str, error: Exception) -> ServerNotRead:
    if isinstance(error, Unreachable):
        what = f"cannot reach the exchange server at {address}"
    elif isinstance(error, Refused):
        what = f"the exchange server at {address} refused to answer"
    else:
        what = f"could not read the exchange server at {address}"
    shown = str(error) if isinstance(error, InvsyncError) else f"{type(error).__name__}: {error}"
    return ServerNotRead(
        f"{what}; the status above lacks the server's part ({bounded(shown, MESSAGE_CHARS)})"
    )


def _client(config: AgentConfig) -> ExchangeClient:
    return exchange_client(config, timeout=PROBE_SECONDS, retry=RetryPolicy(retries=0))


def _peer_lookup(
    config: AgentConfig, store: AgentStore, client: ExchangeClient, failures: _Failures
) -> PeerLookup:
    """The peer's latest snapshot, through the pairing's trusted state as a cycle sees it (so an
    older one than the last verified is refused); read-only: nothing it accepts is saved, and a
    rotation it announces is left for the next cycle to record. A call the server did not answer
    is recorded in `failures`; an answer that does not verify is not (it is shown as such)."""

    peers = peer_policies(config)
    server_keys = pinned_keys(config.server.signing_keys)

    def lookup(name: str) -> SnapshotHeader | None:
        pairing = config.pairings[name]
        failures.check()
        try:
            env = client.fetch_peer_snapshot(name, 0)
        except NotFoundYet:
            return None
        except TransportError as e:
            failures.record(e)
            raise
        trust = pairing_trust(config.party, pairing, store, server_keys, peers[pairing.peer])
        # No clock: an expired snapshot is shown as such, not refused.
        return trust.update_peer(env, version=0, now=None).snapshot.header

    return lookup


def _probe(client: ExchangeClient, failures: _Failures) -> Probe:
    def probe(pairing: str) -> str:
        failures.check()
        try:
            report = client.report(pairing)
        except NotFoundYet:
            return f"reachable at {client.address} (no report yet)"
        except Exception as e:  # any failure leaves the server's part unread
            failures.record(e)
            raise
        return f"reachable at {client.address} (latest report {report.report_id[:12]})"

    return probe
