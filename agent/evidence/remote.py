"""`invsync evidence export --config AGENT.toml`: a party's bundle, read from the exchange over
the agent's own mutual-TLS client.

The server serves a party the entries of its own pairings and the leaf hashes of all others
(server.exchange), so an agent's bundle holds its pairings' history and what proofs need, and
nothing of other pairings. The keys are those the agent's configuration pins: the server's, its
own (and the one it is rotating to, and every one its agent recorded before) and its peers'.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from invsync.agent.config.settings import AgentConfig, exchange_client, load_agent_config
from invsync.agent.evidence.bundle import Bundle, Scope
from invsync.agent.evidence.directory import refuse_existing, write_bundle
from invsync.agent.evidence.export import ExportPlan, check_pairing, export_bundle
from invsync.agent.exchange.keys import VerifyKey, load_signing_key, load_verify_key
from invsync.agent.store.agent_store import AgentStore


def export_from_agent(
    config_path: Path,
    pairing: str | None,
    out: Path,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Bundle:
    """Fetch, verify and write the bundle of the agent's pairings (or of one) to `out`."""
    refuse_existing(out)
    config = load_agent_config(config_path)
    check_pairing(config_path, pairing, config.pairings, "this agent")
    client = exchange_client(config)
    try:
        bundle = export_bundle(client, _plan(config, pairing, clock()))
    finally:
        client.close()
    write_bundle(bundle, out)
    return bundle


def _plan(config: AgentConfig, pairing: str | None, now: datetime) -> ExportPlan:
    return ExportPlan(
        # Without --pairing: every pairing the server lets this party read, the rest withheld.
        scope=Scope(pairing) if pairing is not None else Scope(party=config.party),
        server_keys=tuple(load_verify_key(p) for p in config.server.signing_keys),
        party_keys=_party_keys(config, pairing),
        created_at=now,
    )


def _party_keys(config: AgentConfig, pairing: str | None) -> dict[str, tuple[VerifyKey, ...]]:
    own = {key.keyid: key for key in _recorded_own_keys(config)}
    for path in (config.signing_key, config.next_signing_key):
        if path is not None:
            key = load_signing_key(path).public
            own[key.keyid] = key
    peers = {p.peer for name, p in config.pairings.items() if pairing in (None, name)}
    keys = {config.party: tuple(own.values())}
    keys.update({peer: tuple(load_verify_key(p) for p in config.peers[peer]) for peer in peers})
    return keys


def _recorded_own_keys(config: AgentConfig) -> list[VerifyKey]:
    """The party's earlier signing keys, as its agent recorded them: a party that completed a
    rotation no longer names its first key in its configuration, and its earliest snapshots
    are signed by that key. None before its agent first ran here."""
    if not config.database.exists():
        return []
    with AgentStore(config.database, create=False) as store:
        return store.own_keys()
