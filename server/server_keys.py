"""`invsync server keys rotate`: the exchange server replaces its signing key in band.

With the server stopped (the command takes its database lock, so nothing is signed between the
two keys), the command appends a SERVER_KEY entry to the log (`agent.exchange.server_key`): the
new key, signed by the configured `server.signing_key` and by the new key; and it signs the
checkpoint of the tree ending with that entry with both keys. The operator then points
`server.signing_key` at the new key and starts the server, which signs with it from then on.
Agents and auditors that pinned the old key read the announcement from the log and follow it.

`check_key_in_force` keeps a server from starting with the key it retired: the latest checkpoint
must open with the configured key, and when the log ends with an announcement, its key must be
the configured one (the checkpoint after an announcement opens with either key).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from invsync.agent.errors import ConfigError, InvsyncError
from invsync.agent.exchange.checkpoint import open_checkpoint
from invsync.agent.exchange.keys import (
    SigningKey,
    VerifyKey,
    load_signing_key,
    verify_key_from_spki_der,
)
from invsync.agent.exchange.log_entry import logged_envelope, parse_log_entry
from invsync.agent.exchange.server_key import ServerKeyAnnouncement, server_key_entry
from invsync.agent.store.lock import DaemonLock
from invsync.server.config import ServerConfig
from invsync.server.storage import ExchangeStorage, Logged, LogWriter
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.server")


class KeyNotInForce(ConfigError):
    """The server's configured signing key is not the one its log says is in force."""

    hint = (
        "After `invsync server keys rotate`, set server.signing_key to the new key before the "
        "server starts; the retired key never signs again."
    )


@dataclass(frozen=True)
class Rotated:
    announcement: ServerKeyAnnouncement
    logged: Logged


def rotate_server_key(
    config: ServerConfig, new_key_path: Path, now: datetime | None = None
) -> Rotated:
    """Announce the key in `new_key_path` in the server's log, signed by the configured key
    and by it (see the module docstring)."""
    old = load_signing_key(config.signing_key)
    new = load_signing_key(new_key_path)
    if new.public.keyid == old.public.keyid:
        raise KeyNotInForce(
            f"{new_key_path} is the key server.signing_key of {config.file} already names"
        )
    announcement = ServerKeyAnnouncement(
        config.name, new.public, old.public, now or datetime.now(UTC)
    )
    with DaemonLock(config.database):
        store = ServerStore(config.database)
        try:
            with store.transaction():
                check_key_in_force(store, config.name, old, f"{config.file}: server.signing_key")
                entry = server_key_entry(announcement, old, new)
                logged = LogWriter(config.name, old).append(store, entry, new)
        finally:
            store.close()
    log.warning(
        "server %s announced signing key %s, replacing %s (log entry %d)",
        config.name,
        new.public.keyid[:16],
        old.public.keyid[:16],
        logged.index,
    )
    return Rotated(announcement, logged)


def check_key_in_force(store: ExchangeStorage, name: str, key: SigningKey, what: str) -> None:
    """KeyNotInForce unless `key` (`what`: where it is configured) may sign the server's next
    log entry (see the module docstring)."""
    note = store.checkpoint(0)
    if note is None:
        return  # an empty log: any key starts it
    where = f"{what} (key {key.public.keyid[:16]})"
    try:
        open_checkpoint(note, name, {name: key.public})
    except InvsyncError as e:
        raise KeyNotInForce(
            f"{where} did not sign the log's latest checkpoint: it is not the server's key in "
            f"force ({e})"
        ) from e
    size = store.log_size()
    last = parse_log_entry(store.log_entries(size - 1, size, 1)[0], f"log entry {size - 1}")
    announced = last.announced_key
    if last.kind == pb.LOG_ENTRY_KIND_SERVER_KEY and announced != key.public.spki_der:
        raise KeyNotInForce(
            f"{where} was retired by log entry {size - 1}, which announces the server's new "
            "signing key: set server.signing_key to that key"
        )


def retired_keys(store: ExchangeStorage) -> list[VerifyKey]:
    """The keys the server's log says it retired, oldest first: read from its own database, for
    its exports to pin beside the key in force (what the log holds is verified all the same)."""
    keys: list[VerifyKey] = []
    size, start = store.log_size(), 0
    while start < size:
        leaves = store.log_entries(start, min(size, start + 256), 64 << 20)
        for index, leaf in enumerate(leaves, start=start):
            entry = parse_log_entry(leaf, f"log entry {index}")
            if entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY:
                body = pb.ServerKeyBody.FromString(logged_envelope(entry, "").payload)
                keys.append(verify_key_from_spki_der(body.old_key, source=f"log entry {index}"))
        start += len(leaves)
    return keys
