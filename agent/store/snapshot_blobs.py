"""The snapshot tables' large columns (`payload`, `full`), read once per cycle (issue 13).

A delta's whole set is about 60 MB at 100,000 certificates, and one cycle asks for the same kept
snapshot many times: the draft, the push, the report check, the log watch and the writing each
read the latest sent one, and the peer's are read to offer a base, to verify and to name what
is held. Each read copied the blob out of SQLite again.

A row's blobs are kept under its table, pairing, version and payload SHA-256: a snapshot kept
again with other bytes has another digest. The store's few writes that keep the digest and
change a row's whole set (a peer snapshot kept again with the whole set it lacked, our own
snapshot adopted from the log) `drop` what is held for that version. What is held here is let go
with `forget`: a pairing's when its part of the cycle ends (an agent of many pairings would
otherwise hold four whole sets of each), all at the end of each cycle, so a daemon idles
holding nothing.

A row stored without its whole set (`chain` > 0, agent.store.whole_chain) gets it from the
process's own copy when it holds one (`held`: a daemon's last build, the peer's current set),
else rebuilt from the chain in the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from invsync.agent.store.whole_chain import HeldWhole, rebuilt

_Key = tuple[str, str, int, str]


class SnapshotBlobs:
    """Rows of `sent_snapshots` or `peer_snapshots`, their blobs read at most once per key."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self._db = db
        self._held: dict[_Key, tuple[bytes, bytes | None]] = {}
        self.held_whole: HeldWhole | None = None  # set by a process that holds whole sets

    def rows(self, table: str, where: str, params: Sequence[object]) -> list[dict[str, Any]]:
        """`SELECT * FROM table WHERE where` (each row as a dict), the blobs of a row read
        before taken from what is held. A row gone between the two reads is left out."""
        # From the index of these columns: in the row, most of them lie past the blobs.
        columns = META_COLUMNS[table]
        sql = f"SELECT {columns} FROM {table} INDEXED BY {table}_meta WHERE {where}"
        cursor = self._db.execute(sql, list(params))
        names = [column[0] for column in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            blobs = self._blobs(table, row)
            if blobs is not None:
                row["payload"], row["full"] = blobs
                rows.append(row)
        return rows

    def hold(self, key: _Key, payload: bytes, full: bytes | None) -> None:
        """Hold the blobs just written under their key (table, pairing, version, digest)."""
        self._held[key] = (payload, full)

    def drop(self, table: str, pairing: str, version: int) -> None:
        """Let go of what is held for one version, whatever its digest."""
        for key in [k for k in self._held if k[:3] == (table, pairing, version)]:
            del self._held[key]

    def forget(self, pairing: str | None = None) -> None:
        """Let go of what is held: for one pairing, or for all (None)."""
        if pairing is None:
            self._held.clear()
            return
        for key in [k for k in self._held if k[1] == pairing]:
            del self._held[key]

    def _blobs(self, table: str, row: dict[str, Any]) -> tuple[bytes, bytes | None] | None:
        digest = row["payload_sha256"]
        key = (table, row["pairing"], row["version"], digest)
        held = self._held.get(key)
        if held is not None:
            return held
        found = self._db.execute(
            f"SELECT payload, full FROM {table}"
            " WHERE pairing = ? AND version = ? AND payload_sha256 IS ?",
            [row["pairing"], row["version"], digest],
        ).fetchone()
        if found is None:
            return None
        payload = bytes(found[0])
        full = None if found[1] is None else bytes(found[1])
        if full is None and (row["chain"] or 0) > 0:
            full = self._whole(table, row["pairing"], digest, payload)
        blobs = (payload, full)
        if digest is None:  # written by SQL without one: named by its bytes, never held
            row["payload_sha256"] = hashlib.sha256(blobs[0]).hexdigest()
        else:
            self._held[key] = blobs
        return blobs

    def _whole(self, table: str, pairing: str, digest: str | None, payload: bytes) -> bytes | None:
        """The whole set of a row stored without it: the process's copy, else rebuilt."""
        held = self.held_whole(digest) if self.held_whole is not None and digest else None
        return held if held is not None else rebuilt(self._db, table, pairing, payload)


# Every column but the blobs, by table.
# Every column but the blobs, in the order of each table's `_meta` index (pairing first: a
# query of the rows names its pairing).
META_COLUMNS = {
    "sent_snapshots": "pairing, version, payload_sha256, payload_type, signatures, issued_at,"
    " expires_at, pending, chain",
    "peer_snapshots": "pairing, version, payload_sha256, payload_type, signatures, kept_at, chain",
}
