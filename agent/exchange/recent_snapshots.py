"""The last few snapshots an agent process decoded, by payload SHA-256 (issue 13: agent CPU).

A co-signing agent checks each report on its snapshot by decoding four snapshots: its own
current and previous ones and the peer's. When the peer pushes just after it, it checks a
second report a moment later, whose snapshots are three of the same four and the peer's new
one. Decoding is deterministic (a delta's whole set is committed by the signed header's
records_root, checked on the first decode), so the same payload bytes decode to the same
snapshot: kept here, the second check decodes only what is new. Installed by the agent alone
(the exchange server keeps its own cache of what its reports compare) and cleared at the end
of each pairing's part of a cycle (the next pairing's snapshots are others) and of each cycle,
so a daemon holds nothing between cycles.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from invsync.agent.model.snapshot import Snapshot

# Own and peer, current and previous: a report check's four, and the peer's next one.
KEPT = 5
BASES_KEPT = 2  # the peer's previous snapshot, once per report check


class RecentSnapshots:
    """At most KEPT decoded snapshots, the least recently used let go first."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        # Bases made while decoding a delta on them, each with its header's exact bytes: a
        # decode of the base's own payload takes one only if that payload carries that header.
        self._bases: OrderedDict[str, tuple[Snapshot, bytes]] = OrderedDict()

    @classmethod
    def install(cls, kept: int = KEPT) -> RecentSnapshots:
        """A cache every `decode_payload` of the process consults (the last installed wins)."""
        global _INSTALLED
        cache = cls(kept)
        _INSTALLED = cache
        return cache

    def uninstall(self) -> None:
        """Stop being consulted, if this is the cache installed."""
        global _INSTALLED
        if _INSTALLED is self:
            _INSTALLED = None
        self.clear()

    def get(self, payload_sha256: str) -> Snapshot | None:
        with self._lock:
            snapshot = self._snapshots.get(payload_sha256)
            if snapshot is not None:
                self._snapshots.move_to_end(payload_sha256)
            return snapshot

    def __len__(self) -> int:
        with self._lock:
            return len(self._snapshots)

    def put(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._snapshots[snapshot.payload_sha256] = snapshot
            self._snapshots.move_to_end(snapshot.payload_sha256)
            while len(self._snapshots) > self._kept:
                self._snapshots.popitem(last=False)

    def put_base(self, snapshot: Snapshot, header_bytes: bytes) -> None:
        """Keep the base a delta was just decoded on, as decoding its whole set gives it,
        with the exact bytes of the header it was checked against (`base`)."""
        with self._lock:
            self._bases[snapshot.payload_sha256] = (snapshot, header_bytes)
            while len(self._bases) > BASES_KEPT:
                self._bases.popitem(last=False)

    def base(self, payload_sha256: str, header_bytes: bytes) -> Snapshot | None:
        """The base kept under that payload digest, if its header is `header_bytes`."""
        with self._lock:
            kept = self._bases.get(payload_sha256)
        return kept[0] if kept is not None and kept[1] == header_bytes else None

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()
            self._bases.clear()


_INSTALLED: RecentSnapshots | None = None


def installed() -> RecentSnapshots | None:
    return _INSTALLED
