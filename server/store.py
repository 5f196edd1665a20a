"""The exchange server's database: accepted snapshots as received, receipts, reports, signatures,
and the transparency log with its signed checkpoints. It implements
`server.storage.ExchangeStorage`.

A snapshot and its receipt are written in one transaction, and the receipt is handed out only
after that commit, so an acknowledged snapshot is never lost (DESIGN §9). The log's tables refuse
UPDATE and DELETE: the log only grows, whatever code runs against the file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from invsync.agent.exchange import tlog
from invsync.agent.exchange.acceptance import LastAccepted
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keyring import Rotation, rotation_from_row, rotation_row
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.agent.store.db import open_database
from invsync.server.storage import LogBudget
from invsync.server.storage import StoredReport as StoredReport  # re-exported: its old home

F = TypeVar("F", bound=Callable[..., Any])


def _locked(method: F) -> F:
    @functools.wraps(method)
    def wrapper(self: ServerStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _m001_initial(db: sqlite_utils.Database) -> None:
    db.table("snapshots").create(
        {
            "party": str,
            "pairing": str,
            "version": int,
            "payload": bytes,
            "payload_sha256": str,
            "payload_type": str,
            "signatures": str,
            "received_at": str,
            "receipt": bytes,
        },
        pk=("party", "pairing", "version"),
    )
    db.table("reports").create(
        {"report_id": str, "pairing": str, "created_at": str, "body": bytes}, pk="report_id"
    )
    db.table("reports").create_index(["pairing", "created_at"])
    db.table("report_signatures").create(
        {"report_id": str, "keyid": str, "sig": bytes, "added_at": str},
        pk=("report_id", "keyid"),
        foreign_keys=[("report_id", "reports", "report_id")],
    )


def _m002_key_rotations(db: sqlite_utils.Database) -> None:
    """Signing keys a party rotated to in a pairing (agent.exchange.keyring), with the keys they
    retired."""
    db.table("key_rotations").create(
        {
            "party": str,
            "pairing": str,
            "version": int,
            "new_key": bytes,  # SubjectPublicKeyInfo DER
            "old_keys": str,  # JSON list of base64 SubjectPublicKeyInfo DER
            "accepted_at": str,
        },
        pk=("party", "pairing", "version"),
    )


def _m003_transparency_log(db: sqlite_utils.Database) -> None:
    """The log's leaves (exact serialized LogEntry bytes) and the checkpoint signed at each size.

    A database from before this migration starts an empty log: its earlier exchanges stay in
    their own tables, unlogged, since only the running server can sign checkpoints."""
    db.execute(
        "CREATE TABLE log_entries (idx INTEGER PRIMARY KEY NOT NULL, leaf BLOB NOT NULL,"
        " leaf_hash BLOB NOT NULL, added_at TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE checkpoints (size INTEGER PRIMARY KEY NOT NULL, note BLOB NOT NULL,"
        " signed_at TEXT NOT NULL)"
    )
    for table in ("log_entries", "checkpoints"):
        _append_only(db, table)


# The columns a chain reset moves, named once: the superseded_* tables hold these and the entry
# index of the reset, so a later migration that adds a column to a table must add it here too
# (tests/test_server_store.py compares the schemas).
SUPERSEDED_COLUMNS = {
    "snapshots": (
        "party",
        "pairing",
        "version",
        "payload",
        "payload_sha256",
        "payload_type",
        "signatures",
        "received_at",
        "receipt",
    ),
    "key_rotations": ("party", "pairing", "version", "new_key", "old_keys", "accepted_at"),
}


def _m004_superseded(db: sqlite_utils.Database) -> None:
    """Where an operator's chain reset (`invsync server reset-chain`) moves the snapshots and key
    rotations it sets aside: kept as received, beside the CHAIN_RESET log entry's index, and
    append-only like the log itself."""
    for table, columns in SUPERSEDED_COLUMNS.items():
        types = {c.name: c.type for c in db.table(table).columns}
        declared = ", ".join(f"{c} {types[c]}" for c in columns)
        db.execute(
            f"CREATE TABLE superseded_{table} ({declared}, reset_log_index INTEGER NOT NULL,"
            f" PRIMARY KEY (party, pairing, version, reset_log_index))"
        )
        _append_only(db, f"superseded_{table}")


def _append_only(db: sqlite_utils.Database, table: str) -> None:
    for event in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def _m005_snapshot_sets(db: sqlite_utils.Database) -> None:
    """The whole set of an accepted delta snapshot (agent.exchange.delta), for the latest two of
    each party and pairing: what its next delta builds on, and its report compares. Derived from
    the snapshots table, so it is pruned, and rebuilt from the stored deltas when an older one is
    needed (server.snapshot_sets)."""
    db.execute(
        "CREATE TABLE snapshot_sets (party TEXT NOT NULL, pairing TEXT NOT NULL,"
        " version INTEGER NOT NULL, full BLOB NOT NULL, PRIMARY KEY (party, pairing, version))"
    )


MIGRATIONS = (
    _m001_initial,
    _m002_key_rotations,
    _m003_transparency_log,
    _m004_superseded,
    _m005_snapshot_sets,
)
# Whole sets kept per party and pairing: the latest snapshot's and the one before (reports),
# and every SET_EVERY-th version's, so that rebuilding an older one (server.snapshot_sets)
# applies fewer than SET_EVERY deltas however long the chain runs.
KEPT_SETS = 2
SET_EVERY = 64


class ServerStore:
    """Thread-safe: gRPC serves calls on a pool of threads, so every call holds `_lock`."""

    def __init__(self, path: Path) -> None:
        self.db = open_database(path, MIGRATIONS, threaded=True)
        self._lock = threading.RLock()

    @_locked
    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction for every call inside (theirs nest as savepoints); holding the lock
        throughout keeps other threads' writes out of it."""
        with self._lock, self.db.atomic():
            yield

    @_locked
    def last_accepted(self, party: str, pairing: str) -> LastAccepted | None:
        row = self._latest_row(party, pairing)
        return None if row is None else LastAccepted(row["version"], row["payload_sha256"])

    @_locked
    def commit_snapshot(
        self,
        party: str,
        pairing: str,
        version: int,
        env: Envelope,
        receipt: bytes,
        rotation: Rotation | None = None,
        full: bytes | None = None,
    ) -> None:
        """Store the exact received payload, its receipt and the key it rotated to, or none;
        for a delta, its whole set `full`, keeping the latest KEPT_SETS of the chain and
        every SET_EVERY-th."""
        row = {
            "party": party,
            "pairing": pairing,
            "version": version,
            "payload": env.payload,
            "payload_sha256": _sha256(env.payload),
            "payload_type": env.payload_type,
            "signatures": _sigs_to_json(env.signatures),
            "received_at": _now(),
            "receipt": receipt,
        }
        with self.db.atomic():
            self.db.table("snapshots").insert(row)
            if rotation is not None:
                self.db.table("key_rotations").insert(rotation_row(rotation, _now()))
            if full is not None:
                self._keep_set(party, pairing, version, full)

    def _keep_set(self, party: str, pairing: str, version: int, full: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO snapshot_sets (party, pairing, version, full)"
            " VALUES (?, ?, ?, ?)",
            [party, pairing, version, full],
        )
        self.db.execute(
            "DELETE FROM snapshot_sets WHERE party = ? AND pairing = ? AND version % ? != 0"
            " AND version NOT IN (SELECT version FROM snapshots WHERE party = ? AND pairing = ?"
            " ORDER BY version DESC LIMIT ?)",
            [party, pairing, SET_EVERY, party, pairing, KEPT_SETS],
        )

    @_locked
    def snapshot_set(self, party: str, pairing: str, version: int) -> bytes | None:
        """The kept whole set of the delta snapshot `version`, or None."""
        rows = self.db.execute(
            "SELECT full FROM snapshot_sets WHERE party = ? AND pairing = ? AND version = ?",
            [party, pairing, version],
        ).fetchall()
        return bytes(rows[0][0]) if rows else None

    @_locked
    def version_before(self, party: str, pairing: str, version: int) -> int | None:
        """The party's accepted version of the pairing just below `version`, or None."""
        rows = self.db.execute(
            "SELECT MAX(version) FROM snapshots WHERE party = ? AND pairing = ? AND version < ?",
            [party, pairing, version],
        ).fetchall()
        return None if rows[0][0] is None else int(rows[0][0])

    @_locked
    def supersede(self, party: str, pairing: str, above: int, log_index: int) -> list[int]:
        """Move the party's snapshots and key rotations of the pairing with a version above
        `above` out of force (a chain reset, logged at `log_index`); the versions moved."""
        where = "party = ? AND pairing = ? AND version > ?"
        args = [party, pairing, above]
        versions = [
            int(v)
            for (v,) in self.db.execute(
                f"SELECT version FROM snapshots WHERE {where} ORDER BY version", args
            )
        ]
        with self.db.atomic():
            for table, names in SUPERSEDED_COLUMNS.items():
                columns = ", ".join(names)
                self.db.execute(
                    f"INSERT INTO superseded_{table} ({columns}, reset_log_index)"
                    f" SELECT {columns}, ? FROM {table} WHERE {where}",
                    [log_index, *args],
                )
                self.db.execute(f"DELETE FROM {table} WHERE {where}", args)
            self.db.execute(f"DELETE FROM snapshot_sets WHERE {where}", args)
        return versions

    @_locked
    def rotations(self, party: str) -> list[Rotation]:
        """Every key rotation recorded for `party`, in any pairing."""
        rows = self.db.table("key_rotations").rows_where(
            "party = ?", [party], order_by="pairing, version"
        )
        return [rotation_from_row(row) for row in rows]

    @_locked
    def snapshot(self, party: str, pairing: str, version: int = 0) -> Envelope | None:
        row = self._row(party, pairing, version) if version else self._latest_row(party, pairing)
        if row is None:
            return None
        sigs = _sigs_from_json(row["signatures"])
        return Envelope(row["payload_type"], row["payload"], sigs)

    @_locked
    def receipt(self, party: str, pairing: str, version: int) -> bytes | None:
        row = self._row(party, pairing, version)
        return None if row is None else bytes(row["receipt"])

    @_locked
    def save_report(self, report_id: str, pairing: str, body: bytes, server_sig: Sig) -> bool:
        with self.db.atomic():
            if self.db.table("reports").count_where("report_id = ?", [report_id]):
                return False
            self.db.table("reports").insert(
                {"report_id": report_id, "pairing": pairing, "created_at": _now(), "body": body}
            )
            self._insert_sig(report_id, server_sig)
        return True

    @_locked
    def add_report_signature(self, report_id: str, sig: Sig) -> bool:
        if self._stored_sig(report_id, sig.keyid) == sig.sig:
            return False  # the same bytes again: a retried call, nothing new to keep or log
        with self.db.atomic():
            self._insert_sig(report_id, sig)
        return True

    @_locked
    def report(self, pairing: str, report_id: str = "") -> StoredReport | None:
        where, args = ("pairing = ?", [pairing])
        if report_id:
            where, args = ("pairing = ? and report_id = ?", [pairing, report_id])
        rows = list(
            self.db.table("reports").rows_where(
                where, args, order_by="created_at desc, rowid desc", limit=1
            )
        )
        return self._stored_report(rows[0]) if rows else None

    @_locked
    def append_log_entry(self, leaf: bytes) -> int:
        with self.db.atomic():
            index = self.log_size()
            self.db.table("log_entries").insert(
                {"idx": index, "leaf": leaf, "leaf_hash": tlog.leaf_hash(leaf), "added_at": _now()}
            )
        return index

    @_locked
    def log_size(self) -> int:
        # idx runs 0, 1, 2... without gaps (nothing is ever deleted), so the count is the size.
        return int(self.db.execute("SELECT count(*) FROM log_entries").fetchone()[0])

    @_locked
    def small_log_entries(self, max_length: int) -> list[tuple[int, bytes]]:
        # length() of a BLOB is read from the record's header: large leaves are not loaded.
        rows = self.db.execute(
            "SELECT idx, leaf FROM log_entries WHERE length(leaf) <= ? ORDER BY idx", [max_length]
        )
        return [(int(idx), bytes(leaf)) for idx, leaf in rows]

    @_locked
    def log_entries(self, start: int, end: int, max_bytes: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT leaf FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx", [start, end]
        )
        leaves: list[bytes] = []
        total = 0
        for (leaf,) in rows:  # read lazily: a range of large entries stops at the budget
            total += len(leaf)
            if leaves and total > max_bytes:
                break
            leaves.append(bytes(leaf))
        return leaves

    @_locked
    def shown_entries(
        self, start: int, end: int, budget: LogBudget, shown: Callable[[bytes], bool]
    ) -> tuple[list[bytes], list[bytes]]:
        """The leaf hashes of start <= index < end and the entries `shown` keeps (b"" for the
        others), maybe the first part only: what is served counts against `budget.served`
        (a withheld entry costs its hash), what is read against `budget.read`. At least one."""
        # Sizes first (SQLite answers length() without loading a blob), so an entry is read
        # only when the read budget has room for it: the first one always.
        sizes = self.db.execute(
            "SELECT idx, leaf_hash, length(leaf) FROM log_entries"
            " WHERE idx >= ? AND idx < ? ORDER BY idx",
            [start, end],
        ).fetchall()
        hashes: list[bytes] = []
        entries: list[bytes] = []
        served = read = 0
        for index, leaf_hash, size in sizes:
            read += size
            if hashes and read > budget.read:
                break
            leaf = self._leaf(index)
            entry = leaf if shown(leaf) else b""
            served += len(entry) or len(leaf_hash)
            if hashes and served > budget.served:
                break
            hashes.append(bytes(leaf_hash))
            entries.append(entry)
        return hashes, entries

    def _leaf(self, index: int) -> bytes:
        row = self.db.execute("SELECT leaf FROM log_entries WHERE idx = ?", [index]).fetchone()
        return bytes(row[0])

    @_locked
    def leaf_hashes(self, size: int) -> list[bytes]:
        rows = self.db.execute(
            "SELECT leaf_hash FROM log_entries WHERE idx < ? ORDER BY idx", [size]
        )
        return [bytes(h) for (h,) in rows]

    @_locked
    def save_checkpoint(self, size: int, note: bytes) -> None:
        with self.db.atomic():
            self.db.table("checkpoints").insert({"size": size, "note": note, "signed_at": _now()})

    @_locked
    def checkpoint(self, size: int = 0) -> bytes | None:
        where, args = ("size = ?", [size]) if size else ("1", [])
        row = self.db.execute(
            f"SELECT note FROM checkpoints WHERE {where} ORDER BY size DESC LIMIT 1", args
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _stored_sig(self, report_id: str, keyid: str) -> bytes | None:
        row = self.db.execute(
            "SELECT sig FROM report_signatures WHERE report_id = ? AND keyid = ?",
            [report_id, keyid],
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _stored_report(self, row: dict[str, Any]) -> StoredReport:
        sigs = tuple(
            Sig(r["keyid"], bytes(r["sig"]))
            for r in self.db.table("report_signatures").rows_where(
                "report_id = ?", [row["report_id"]], order_by="added_at, rowid"
            )
        )
        env = Envelope(REPORT_PAYLOAD_TYPE, bytes(row["body"]), sigs)
        created = datetime.fromisoformat(row["created_at"])
        return StoredReport(row["report_id"], row["pairing"], created, env)

    def _insert_sig(self, report_id: str, sig: Sig) -> None:
        self.db.table("report_signatures").insert(
            {"report_id": report_id, "keyid": sig.keyid, "sig": sig.sig, "added_at": _now()},
            replace=True,
        )

    def _row(self, party: str, pairing: str, version: int) -> dict[str, Any] | None:
        rows = self.db.table("snapshots").rows_where(
            "party = ? and pairing = ? and version = ?", [party, pairing, version]
        )
        return next(iter(rows), None)

    def _latest_row(self, party: str, pairing: str) -> dict[str, Any] | None:
        rows = self.db.table("snapshots").rows_where(
            "party = ? and pairing = ?", [party, pairing], order_by="version desc", limit=1
        )
        return next(iter(rows), None)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _now() -> str:
    # Always with microseconds, unlike agent.times.rfc3339: rows are ordered by this text, and
    # "10:00:00Z" would sort after "10:00:00.5Z".
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _sigs_to_json(sigs: tuple[Sig, ...]) -> str:
    return json.dumps([{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in sigs])


def _sigs_from_json(text: str) -> tuple[Sig, ...]:
    return tuple(Sig(s["keyid"], base64.b64decode(s["sig"])) for s in json.loads(text))
