"""`invsync evidence export --server-config SERVER.toml`: a bundle read from the exchange
server's own database, through the `ExchangeStorage` interface, on the server's host.

The server holds every entry, so a bundle of all pairings holds every entry in full, and one of
a pairing holds that pairing's entries and the others' leaf hashes. It holds every checkpoint
the server signed (one per tree size). The keys are the server's own public key and the keys its
configuration pins for the parties in scope. What is read is verified, with the server's own
public key, before it is written (agent.evidence.export).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from invsync.agent.evidence.bundle import Bundle, Scope
from invsync.agent.evidence.directory import refuse_existing, write_bundle
from invsync.agent.evidence.export import ExportPlan, check_pairing, export_bundle
from invsync.agent.evidence.failures import ExportError
from invsync.agent.exchange import tlog
from invsync.agent.exchange.keys import VerifyKey, load_signing_key, load_verify_key
from invsync.agent.exchange.logrange import LogRange
from invsync.server.config import ServerConfig, load_server_config
from invsync.server.exchange import MAX_LOG_ANSWER_BYTES
from invsync.server.server_keys import retired_keys
from invsync.server.storage import ExchangeStorage
from invsync.server.store import ServerStore


class StoreLog:
    """The log as `agent.evidence.export.LogSource` reads it, from the server's storage."""

    def __init__(self, store: ExchangeStorage) -> None:
        self.store = store
        self._hashes: list[bytes] = []  # the leaf hashes read so far: the log only grows

    def checkpoint(self, tree_size: int = 0) -> bytes:
        note = self.store.checkpoint(tree_size)
        if note is None:
            which = f"of size {tree_size}" if tree_size else "yet"
            raise ExportError(f"the server's log has no checkpoint {which}")
        return note

    def log_range(self, start: int, end: int) -> LogRange:
        return LogRange.of(start, self.store.log_entries(start, end, MAX_LOG_ANSWER_BYTES), _all)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return tlog.inclusion_proof(self._leaf_hashes(tree_size), index)

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return tlog.consistency_proof(self._leaf_hashes(second_size), first_size)

    def _leaf_hashes(self, size: int) -> list[bytes]:
        # Read once, all of them: any prefix of today's log is the tree of that size.
        if len(self._hashes) < size:
            self._hashes = self.store.leaf_hashes(self.store.log_size())
        return self._hashes[:size]


def _all(leaf: bytes) -> bool:
    return True  # the server may read every entry; the scope is applied by the exporter


def export_from_server(
    config_path: Path,
    pairing: str | None,
    out: Path,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Bundle:
    """Read, verify and write the bundle of the server's pairings (or of one) to `out`."""
    refuse_existing(out)
    config = load_server_config(config_path)
    check_pairing(config_path, pairing, config.pairings, "this server")
    if not config.database.exists():
        raise ExportError(f"{config.database}: no server database there (has the server run?)")
    store = ServerStore(config.database)
    try:
        bundle = export_bundle(StoreLog(store), _plan(config, pairing, clock(), store))
    finally:
        store.close()
    write_bundle(bundle, out)
    return bundle


def _plan(
    config: ServerConfig, pairing: str | None, now: datetime, store: ServerStore
) -> ExportPlan:
    return ExportPlan(
        scope=Scope(pairing),
        # The keys it signed with before (`invsync server keys rotate`), then the one in force.
        server_keys=(*retired_keys(store), load_signing_key(config.signing_key).public),
        party_keys=_party_keys(config, pairing),
        created_at=now,
        every_checkpoint=True,
    )


def _party_keys(config: ServerConfig, pairing: str | None) -> dict[str, tuple[VerifyKey, ...]]:
    pairings = [p for name, p in config.pairings.items() if pairing in (None, name)]
    parties = sorted({name for p in pairings for name in (p.root, p.subordinate)})
    return {
        name: tuple(load_verify_key(path) for path in config.parties[name].signing_keys)
        for name in parties
    }
