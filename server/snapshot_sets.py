"""The whole set of an accepted snapshot, as a delta's base and for the reports.

A full snapshot's payload is its whole set. A delta's is kept beside it for the latest two of a
chain and every 64th version (server.store); an older one (a chain reset back past them, a
rotation's catch-up) is rebuilt from the stored payloads: back to the nearest full snapshot or
kept set, so fewer than 64 deltas, then each delta applied forward
(agent.exchange.delta). Every payload here was verified when it was accepted.
"""

from __future__ import annotations

from invsync.agent.errors import StoreError
from invsync.agent.exchange import delta
from invsync.server.storage import ExchangeStorage


def whole_set(store: ExchangeStorage, party: str, pairing: str, version: int) -> bytes | None:
    """The full form of the party's accepted snapshot `version`, or None if not held."""
    pending: list[bytes] = []  # delta payloads to apply, newest first
    at: int | None = version
    while at is not None:
        env = store.snapshot(party, pairing, at)
        if env is None:
            break
        if not delta.accepted_header(env.payload).delta:
            return _apply(env.payload, pending)
        kept = store.snapshot_set(party, pairing, at)
        if kept is not None:
            return _apply(kept, pending)
        pending.append(env.payload)
        at = store.version_before(party, pairing, at)
    if pending:
        raise StoreError(
            f"{party}'s snapshot version {version} of pairing {pairing!r} is a delta whose chain "
            "holds no full snapshot: the server's database is damaged"
        )
    return None


def _apply(base: bytes, deltas: list[bytes]) -> bytes:
    return delta.rebuild_chain(base, [delta.read_parts(payload) for payload in reversed(deltas)])
