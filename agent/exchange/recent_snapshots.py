"""The last few snapshots an agent process decoded, by payload SHA-256 (issue 13: agent CPU).

A co-signing agent checks each report on its snapshot by decoding four snapshots: its own
current and previous ones and the peer's. When the peer pushes just after it, it checks a
second report a moment later, whose snapshots are three of the same four and the peer's new
one. Decoding is deterministic (a delta's whole set is committed by the signed header's
records_root, checked on the first decode), so the same payload bytes decode to the same
snapshot: kept here, the second check decodes only what is new. Installed by the agent alone
(the exchange server keeps its own cache of what its reports compare).

When a pairing's part of a cycle ends, the newest snapshot of each of its parties is kept until
that pairing's part of the next cycle ends, and the others are let go. The next cycle's report
check compares these two again, as the previous snapshots, and the peer's next delta builds on
the peer's: while they are alive, the records decoded before are shared by their bytes
(agent.exchange.snapshot), so a daemon decodes only the records that changed. A daemon so holds
each pairing's two newest snapshots between cycles (a one-shot process exits with its only
cycle, and everything it held). It also holds the whole sets of the peer's current snapshot as
read when it was decoded (a delta rebuilt, or a full one), once accepted, and of the one
before: the base of the peer's next delta, and what the store would otherwise rebuild for the
report check's previous one (`adopt_whole`, agent.store.whole_chain). Two sets of one chain
share their records' bytes; each keeps what its decode made of each record's bytes (the record
and the bytes' SHA-256, `WholeSet.decoded`): about 11 MB of dict and tuples at 100,000
records, so the next delta decodes only its own records.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection

from invsync.agent.exchange.delta import WholeSet, full_form
from invsync.agent.model.snapshot import Snapshot

# Own and peer, current and previous: a report check's four, and the peer's next one.
KEPT = 5
BASES_KEPT = 2  # the peer's previous snapshot, once per report check
ADOPTED_KEPT = 2  # per party: its current snapshot's whole set and the previous one's


class RecentSnapshots:
    """At most KEPT decoded snapshots, the least recently used let go first."""

    def __init__(self, kept: int = KEPT, *, wholes: bool = True) -> None:
        self._kept = kept
        self._keeps_wholes = wholes
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        # Bases made while decoding a delta on them, each with its header's exact bytes: a
        # decode of the base's own payload takes one only if that payload carries that header.
        self._bases: OrderedDict[str, tuple[Snapshot, bytes]] = OrderedDict()
        # pairing -> its parties' newest snapshots by payload digest, kept when its part ended.
        self._newest: dict[str, dict[str, Snapshot]] = {}
        # Whole sets of the deltas decoded last, by payload digest, until one is adopted; and
        # (pairing, party) -> the last ones adopted, by payload digest, the newest last: the
        # peer's current snapshot, once accepted, and the one before.
        self._held_wholes: OrderedDict[str, WholeSet] = OrderedDict()
        self._wholes: dict[tuple[str, str], OrderedDict[str, WholeSet]] = {}

    @classmethod
    def install(cls, kept: int = KEPT, *, wholes: bool = True) -> RecentSnapshots:
        """A cache every `decode_payload` of the process consults (the last installed wins).
        `wholes`: hold whole sets for `adopt_whole` (a one-shot process, which has no next
        cycle to use them in, does not)."""
        global _INSTALLED
        cache = cls(kept, wholes=wholes)
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
            for kept in self._newest.values():
                if payload_sha256 in kept:
                    self._touch(kept[payload_sha256])  # used in this part, as if decoded in it
                    return kept[payload_sha256]
            return None

    def __len__(self) -> int:
        """Snapshots held: this part's, and those kept from earlier parts (one may be both)."""
        with self._lock:
            kept = {d for snapshots in self._newest.values() for d in snapshots}
            return len(kept | self._snapshots.keys())

    def put(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._touch(snapshot)

    def _touch(self, snapshot: Snapshot) -> None:
        """`snapshot` the most recently used of this part (the lock held)."""
        self._snapshots[snapshot.payload_sha256] = snapshot
        self._snapshots.move_to_end(snapshot.payload_sha256)
        while len(self._snapshots) > self._kept:
            self._snapshots.popitem(last=False)

    @property
    def keeps_wholes(self) -> bool:
        """Whether `hold_whole` keeps anything (not in a one-shot process)."""
        return self._keeps_wholes

    def hold_whole(self, payload_sha256: str, whole: WholeSet) -> None:
        """Hold the whole set of a snapshot just decoded, as read (a delta's rebuilt, a full
        one's own), until the caller accepts it (`adopt_whole`); only the last few, and none
        beyond the cycle."""
        if not self._keeps_wholes:
            return
        with self._lock:
            self._held_wholes[payload_sha256] = whole
            while len(self._held_wholes) > BASES_KEPT:
                self._held_wholes.popitem(last=False)

    def adopt_whole(self, snapshot: Snapshot) -> None:
        """Keep the whole set held for `snapshot`, just accepted as the peer's current one: the
        peer's next delta builds on it and need not read it again (60 MB at 100,000). The last
        ADOPTED_KEPT for each party of a pairing, kept until `clear` as the newest snapshots
        are; nothing if none is held."""
        header = snapshot.header
        with self._lock:
            whole = self._held_wholes.get(snapshot.payload_sha256)
            if whole is not None:
                adopted = self._wholes.setdefault((header.pairing, header.party), OrderedDict())
                adopted[snapshot.payload_sha256] = whole
                adopted.move_to_end(snapshot.payload_sha256)
                while len(adopted) > ADOPTED_KEPT:
                    adopted.popitem(last=False)

    def whole(self, payload_sha256: str) -> WholeSet | None:
        """The whole set adopted for the snapshot whose payload has that digest, if any."""
        with self._lock:
            for adopted in self._wholes.values():
                if payload_sha256 in adopted:
                    return adopted[payload_sha256]
        return None

    def full_of(self, payload_sha256: str) -> bytes | None:
        """The whole set (full form) of a snapshot held here, as it was decoded or built, if
        held; unlike `get`, not counted as used."""
        with self._lock:
            held = [self._snapshots, *self._newest.values()]
            snapshot = next((s[payload_sha256] for s in held if payload_sha256 in s), None)
        return snapshot.full if snapshot is not None and snapshot.full else None

    def whole_form(self, payload_sha256: str) -> bytes | None:
        """`whole`'s full form (its bytes, joined again), if held."""
        whole = self.whole(payload_sha256)
        return full_form(whole.parts.header_bytes, whole.parts.records) if whole else None

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

    def end_pairing(self, pairing: str, parties: Collection[str]) -> None:
        """Keep, for each of `parties` (the pairing's own two), its newest snapshot of `pairing`
        that this part decoded or used, until the pairing's part of the next cycle ends; the
        one kept before when this part touched none of that party's. Of two of one version
        (a pending snapshot built again), the one used last. Let the others go."""
        with self._lock:
            self._held_wholes.clear()  # held for this part's adoption alone
            kept = {s.header.party: s for s in self._newest.get(pairing, {}).values()}
            touched: dict[str, Snapshot] = {}
            for snapshot in self._snapshots.values():  # least recently used first
                header, held = snapshot.header, touched.get(snapshot.header.party)
                if header.pairing != pairing or header.party not in parties:
                    continue
                if held is None or header.version >= held.header.version:
                    touched[header.party] = snapshot
            newest = kept | touched
            self._newest[pairing] = {s.payload_sha256: s for s in newest.values()}
            self._snapshots.clear()
            self._bases.clear()

    def end_cycle(self) -> None:
        """Let go of what the cycle decoded, but for the newest snapshots `end_pairing` kept
        and the whole sets adopted."""
        with self._lock:
            self._snapshots.clear()
            self._bases.clear()
            self._held_wholes.clear()

    def clear(self) -> None:
        """Let go of everything, the newest snapshots too."""
        with self._lock:
            self._snapshots.clear()
            self._bases.clear()
            self._newest.clear()
            self._held_wholes.clear()
            self._wholes.clear()


_INSTALLED: RecentSnapshots | None = None


def installed() -> RecentSnapshots | None:
    return _INSTALLED
