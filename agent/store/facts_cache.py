"""What is derived from certificates alone, kept in the agent's database (issue 13, "Parse
once"): a steady cycle, a fresh process each time, then parses and verifies only new ones.

`FactsCache` is the model's `InfoCache` (agent.model.record: each certificate's fields, as
agent.model.derived encodes them) and the scope's `SignatureCache` (agent.inventory.scope:
whether a certificate verified with an issuer's key), over the AgentStore's own connection.
Reads go to the database when asked, and what was read or derived stays in memory while the
process uses it: a cycle reads its certificates in several passes (the sources, the stored
inventory, its own and the peer's snapshots). What no pass asked for across two flushes is let
go, so a daemon holds about one cycle's certificates. Writes wait in memory and are flushed
together, in one transaction, where the agent says (while a snapshot is pushed, at the end of
the cycle, on close), never inside another transaction of the store: a flush that finds one
open leaves them for the next. Only the cycle's end ages what was read (`age`): a cycle pushes
once per pairing.
Being a cache, it never fails its caller: a row it cannot use, or a database it cannot read or
write, means deriving again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Generic, TypeVar

from invsync.agent.errors import StoreError
from invsync.agent.inventory.scope import install_signature_cache, uninstall_signature_cache
from invsync.agent.model.derived import FORMAT, facts_json, info_from_json
from invsync.agent.model.record import CertInfo, install_info_cache, uninstall_info_cache
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.store.db import transaction

log = logging.getLogger("invsync.agent")
K = TypeVar("K")
V = TypeVar("V")

_KEEP_FACTS = "INSERT OR REPLACE INTO derived_facts (sha256, facts) VALUES (?, ?)"
_KEEP_CHECK = (
    "INSERT OR REPLACE INTO signature_checks (sha256, spki_sha256, format, signed)"
    " VALUES (?, ?, ?, ?)"
)
_FACTS = "SELECT facts FROM derived_facts WHERE sha256 = ?"
_CHECK = "SELECT signed, format FROM signature_checks WHERE sha256 = ? AND spki_sha256 = ?"
_ALL_FACTS = "SELECT sha256, facts FROM derived_facts"
_ALL_CHECKS = "SELECT sha256, spki_sha256, signed, format FROM signature_checks"
# A fresh process reads each table whole, once, when it has at most this many rows: one query
# costs about a tenth of asking row by row (1.5 against 12 us a row), and a steady cycle asks
# for nearly every row. The rows wait, as stored, until asked for or the second ageing flush
# after (a cycle's end: every pairing's scope and report checks ask theirs before); beyond the
# bound (a few hundred MB of text) it asks row by row.
BULK_MAX_ROWS = 250_000
BULK_KEPT_FLUSHES = 2


class FactsCache:
    """Derived facts of one AgentStore (see the module docstring)."""

    def __init__(self, store: AgentStore) -> None:
        self.store = store
        # A sqlite3 connection serves the thread that opened it: other threads only see what
        # waits to be flushed, and derive the rest.
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._infos: dict[str, CertInfo] = {}  # derived here, not yet written
        self._signed: dict[tuple[str, str], bool] = {}
        self._held = _Generations[str, CertInfo]()
        self._checks = _Generations[tuple[str, str], bool]()
        self._bulk_read = False  # whether this process read the tables whole already
        self._bulk_flushes = 0  # flushes since, up to BULK_KEPT_FLUSHES: then the rows go
        self._facts_rows: dict[str, object] = {}  # read whole, not asked for yet
        self._check_rows: dict[tuple[str, str], tuple[object, object]] = {}
        # Whether those rows are the tables as read whole, less what was asked: then a row not
        # among them is not stored either, and no query is made for it (a first collection
        # asks for 100,000 certificates an empty table does not hold).
        self._whole = False

    @classmethod
    def install(cls, store: AgentStore) -> FactsCache:
        """A cache of `store`, consulted by every parse and scope check of the process."""
        cache = cls(store)
        install_info_cache(cache)
        install_signature_cache(cache)
        return cache

    def close(self) -> None:
        """Stop being consulted, and flush (before the store closes)."""
        uninstall_info_cache(self)
        uninstall_signature_cache(self)
        self.flush()

    def info(self, sha256: str, der: bytes) -> CertInfo | None:
        with self._lock:
            held = self._held.get(sha256)
        if held is not None and held.der == der:
            return held
        stored = self._stored_facts(sha256)
        info = None if stored is None else info_from_json(stored, sha256, der)
        if info is not None:
            with self._lock:
                self._held.put(sha256, info)
        return info

    def add_info(self, info: CertInfo) -> None:
        with self._lock:
            self._infos[info.sha256] = info
            self._held.put(info.sha256, info)

    def signed(self, sha256: str, spki_sha256: str) -> bool | None:
        with self._lock:
            held = self._checks.get((sha256, spki_sha256))
        if held is not None:
            return held
        row = self._stored_check(sha256, spki_sha256)
        if row is None or row[1] != FORMAT or row[0] not in (0, 1):
            return None  # not kept, kept by another parser release, or not an outcome
        with self._lock:
            self._checks.put((sha256, spki_sha256), bool(row[0]))
        return bool(row[0])

    def add_signed(self, sha256: str, spki_sha256: str, signed: bool) -> None:
        with self._lock:
            self._signed[(sha256, spki_sha256)] = signed
            self._checks.put((sha256, spki_sha256), signed)

    def flush(self, *, age: bool = True) -> None:
        """Write what was added since the last flush, in one transaction; unless called from
        another thread or inside a transaction of the store, where it is left for the next.
        With `age`, what was read and not asked for since the flush before is let go."""
        if threading.get_ident() != self._owner or self.store.db.conn.in_transaction:
            return
        with self._lock:
            infos, self._infos = self._infos, {}
            signed, self._signed = self._signed, {}
            if age:
                self._age()
        if infos or signed:
            self._write(infos, signed)

    def _age(self) -> None:
        self._held.age()
        self._checks.age()
        self._bulk_flushes += 1
        if self._bulk_flushes >= BULK_KEPT_FLUSHES:
            self._facts_rows, self._check_rows = {}, {}
            self._whole = False

    def _write(self, infos: dict[str, CertInfo], signed: dict[tuple[str, str], bool]) -> None:
        # Generators: the rows are written as they are made (about 1 KB of JSON each, a
        # gigabyte at once for a cold cycle of 1,000,000 certificates).
        facts = ((sha256, facts_json(info)) for sha256, info in infos.items())
        checks = ((sha256, spki, FORMAT, int(ok)) for (sha256, spki), ok in signed.items())
        db = self.store.db
        try:
            with transaction(db, f"{self.store.path}: cannot keep derived facts"):
                db.conn.executemany(_KEEP_FACTS, facts)
                db.conn.executemany(_KEEP_CHECK, checks)
        except StoreError as e:
            # A cycle does not fail for its cache: the next process derives these again.
            log.warning("%s; they will be derived again", e)

    def _stored_facts(self, sha256: str) -> object | None:
        self._read_whole_once()
        with self._lock:
            if self._whole:
                return self._facts_rows.pop(sha256, None)
        row = self._read(_FACTS, sha256)
        return None if row is None else row[0]

    def _stored_check(self, sha256: str, spki_sha256: str) -> tuple[object, object] | None:
        self._read_whole_once()
        with self._lock:
            if self._whole:
                return self._check_rows.pop((sha256, spki_sha256), None)
        row = self._read(_CHECK, sha256, spki_sha256)
        return None if row is None else (row[0], row[1])

    def _read_whole_once(self) -> None:
        """Both tables read whole at this process's first ask, if small enough (BULK_MAX_ROWS)."""
        if self._bulk_read or threading.get_ident() != self._owner:
            return
        self._bulk_read = True
        try:
            conn = self.store.db.conn
            facts = conn.execute("SELECT count(*) FROM derived_facts").fetchone()[0]
            checks = conn.execute("SELECT count(*) FROM signature_checks").fetchone()[0]
            if max(facts, checks) > BULK_MAX_ROWS:
                return
            facts_rows = {sha: facts for sha, facts in conn.execute(_ALL_FACTS)}
            check_rows = {(sha, spki): (ok, f) for sha, spki, ok, f in conn.execute(_ALL_CHECKS)}
        except sqlite3.Error:
            return  # asked row by row, each failing alike: deriving again is always right
        with self._lock:
            self._facts_rows, self._check_rows = facts_rows, check_rows
            self._bulk_flushes = 0
            self._whole = True

    def _read(self, sql: str, *params: str) -> tuple[object, ...] | None:
        if threading.get_ident() != self._owner:
            return None
        try:
            row: tuple[object, ...] | None = self.store.db.execute(sql, params).fetchone()
        except sqlite3.Error:
            return None  # unreadable (closed, corrupt): deriving again is always right
        return row


class _Generations(Generic[K, V]):
    """A map that forgets what was not asked for across two `age` calls: what the last
    flush period used, and what this one used so far."""

    def __init__(self) -> None:
        self._now: dict[K, V] = {}
        self._before: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        value = self._now.get(key)
        if value is None:
            value = self._before.pop(key, None)
            if value is not None:
                self._now[key] = value
        return value

    def put(self, key: K, value: V) -> None:
        self._now[key] = value

    def age(self) -> None:
        self._before, self._now = self._now, {}
