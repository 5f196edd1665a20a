"""`invsync server keys rotate`: the exchange server replaces its signing key in band.

With the server stopped (the command takes its database lock, so nothing is signed between the
two keys), the command appends a SERVER_KEY entry to the log (`agent.exchange.server_key`): the
new key, signed by the configured `server.signing_key` and by the new key; and it signs the
checkpoint of the tree ending with that entry with both keys. The operator then points
`server.signing_key` at the new key and starts the server, which signs with it from then on.
Agents and auditors that pinned the old key read the announcement from the log and follow it.

`check_key_in_force` keeps the server from signing with any key but the one in force: the key the
last SERVER_KEY entry of the log announces, wherever it stands (entries after it are signed by it
alone), or before any, the key that signed the latest checkpoint. It runs when the server starts
and inside the transaction of every command that signs the log (`keys rotate`, `reset-chain`).
A key the log retired is never announced again.
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
)
from invsync.agent.exchange.log_entry import logged_envelope, parse_log_entry
from invsync.agent.exchange.server_key import (
    ServerKeyAnnouncement,
    decode_announcement,
    server_key_entry,
)
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
                announced = announcements(store)  # read once for both checks
                where = f"{config.file}: server.signing_key"
                check_key_in_force(store, config.name, old, where, announced)
                _check_never_used(announced, new, new_key_path)
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


def _check_never_used(announced: list[Announced], new: SigningKey, path: Path) -> None:
    """A key the server retired never signs again: agents and auditors refuse its
    announcement (`agent.exchange.server_key`), so the log would stop at it."""
    retired = _retiring(announced, new.public.keyid)
    if retired is not None:
        raise KeyNotInForce(
            f"{path} holds server key {new.public.keyid[:16]}, which the server retired at "
            f"log entry {retired.index}: a retired key never signs again; announce a new key"
        )


def _retiring(announced: list[Announced], keyid: str) -> Announced | None:
    """The announcement that retired the key `keyid`, if one did."""
    return next((a for a in announced if a.old_key.keyid == keyid), None)


def check_key_in_force(
    store: ExchangeStorage,
    name: str,
    key: SigningKey,
    what: str,
    announced: list[Announced] | None = None,
) -> None:
    """KeyNotInForce unless `key` (`what`: where it is configured) may sign the server's next
    log entry (see the module docstring); `announced`: the log's announcements, when the
    caller has read them."""
    note = store.checkpoint(0)
    if note is None:
        return  # an empty log: any key starts it
    where = f"{what} (key {key.public.keyid[:16]})"
    if announced is None:
        announced = announcements(store)
    if announced and announced[-1].new_key.keyid != key.public.keyid:
        last = announced[-1]
        retired = _retiring(announced, key.public.keyid)
        said = (
            f"was retired by log entry {retired.index}"
            if retired is not None
            else "is not the server's signing key"
        )
        raise KeyNotInForce(
            f"{where} {said}: the key in force is {last.new_key.keyid[:16]}, announced by log "
            f"entry {last.index}; set server.signing_key to that key"
        )
    try:
        open_checkpoint(note, name, {name: key.public})
    except InvsyncError as e:
        raise KeyNotInForce(
            f"{where} did not sign the log's latest checkpoint: it is not the server's key in "
            f"force ({e})"
        ) from e


# An announcement holds two public keys and two signatures in one envelope: under 2 KB with
# the largest keys invsync makes (P-384); the bound leaves room.
MAX_ANNOUNCEMENT_BYTES = 16384


@dataclass(frozen=True)
class Announced:
    """A SERVER_KEY entry of the server's own log: at `index`, `new_key` replaced `old_key`."""

    index: int
    new_key: VerifyKey
    old_key: VerifyKey


def announcements(store: ExchangeStorage) -> list[Announced]:
    """The server's key announcements in its own log, oldest first: read from its own database,
    which only this server writes (agents and auditors verify what the log holds all the
    same). The last one names the key in force, wherever it stands in the log."""
    found: list[Announced] = []
    # Only small entries can be announcements: at every start and reset, a log holding
    # snapshots of 1,000,000 certificates is not read whole for them.
    for index, leaf in store.small_log_entries(MAX_ANNOUNCEMENT_BYTES):
        entry = parse_log_entry(leaf, f"log entry {index}")
        if entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY:
            where = f"log entry {index}"
            body = decode_announcement(logged_envelope(entry, where), where)
            found.append(Announced(index, body.new_key, body.old_key))
    return found


def retired_keys(store: ExchangeStorage) -> list[VerifyKey]:
    """The keys the server's log says it retired, oldest first, for its exports to pin beside
    the key in force."""
    return [a.old_key for a in announcements(store)]
