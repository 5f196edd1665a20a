"""What is derived from certificates alone, kept in the agent's database (issue 13, "Parse
once"): a steady cycle, a fresh process each time, then parses and verifies only new ones.

`FactsCache` is the model's `InfoCache` (agent.model.record: each certificate's fields, as
agent.model.derived encodes them) and the scope's `SignatureCache` (agent.inventory.scope:
whether a certificate verified with an issuer's key), over the AgentStore's own connection.
Reads go to the database when asked; writes wait in memory and are flushed together, in one
transaction, where the agent says (end of collection, of cycle, close), never inside another
transaction of the store: a flush that finds one open leaves them for the next. Being a cache,
it never fails its caller: a row it cannot use, or a database it cannot read or write, means
deriving again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from invsync.agent.errors import StoreError
from invsync.agent.inventory.scope import install_signature_cache, uninstall_signature_cache
from invsync.agent.model.derived import FORMAT, facts_json, info_from_json
from invsync.agent.model.record import CertInfo, install_info_cache, uninstall_info_cache
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.store.db import transaction

log = logging.getLogger("invsync.agent")

_KEEP_FACTS = "INSERT OR REPLACE INTO derived_facts (sha256, facts) VALUES (?, ?)"
_KEEP_CHECK = (
    "INSERT OR REPLACE INTO signature_checks (sha256, spki_sha256, format, signed)"
    " VALUES (?, ?, ?, ?)"
)
_FACTS = "SELECT facts FROM derived_facts WHERE sha256 = ?"
_CHECK = "SELECT signed, format FROM signature_checks WHERE sha256 = ? AND spki_sha256 = ?"


class FactsCache:
    """Derived facts of one AgentStore (see the module docstring)."""

    def __init__(self, store: AgentStore) -> None:
        self.store = store
        # A sqlite3 connection serves the thread that opened it: other threads only see what
        # waits to be flushed, and derive the rest.
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._infos: dict[str, CertInfo] = {}
        self._signed: dict[tuple[str, str], bool] = {}

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
            waiting = self._infos.get(sha256)
        if waiting is not None:
            return waiting
        row = self._read(_FACTS, sha256)
        return None if row is None else info_from_json(row[0], sha256, der)

    def add_info(self, info: CertInfo) -> None:
        with self._lock:
            self._infos[info.sha256] = info

    def signed(self, sha256: str, spki_sha256: str) -> bool | None:
        with self._lock:
            waiting = self._signed.get((sha256, spki_sha256))
        if waiting is not None:
            return waiting
        row = self._read(_CHECK, sha256, spki_sha256)
        if row is None or row[1] != FORMAT or row[0] not in (0, 1):
            return None  # not kept, kept by another parser release, or not an outcome
        return bool(row[0])

    def add_signed(self, sha256: str, spki_sha256: str, signed: bool) -> None:
        with self._lock:
            self._signed[(sha256, spki_sha256)] = signed

    def flush(self) -> None:
        """Write what was added since the last flush, in one transaction; unless called from
        another thread or inside a transaction of the store, where it is left for the next."""
        if threading.get_ident() != self._owner or self.store.db.conn.in_transaction:
            return
        with self._lock:
            infos, self._infos = self._infos, {}
            signed, self._signed = self._signed, {}
        if infos or signed:
            self._write(infos, signed)

    def _write(self, infos: dict[str, CertInfo], signed: dict[tuple[str, str], bool]) -> None:
        facts = [(sha256, facts_json(info)) for sha256, info in infos.items()]
        checks = [(sha256, spki, FORMAT, int(ok)) for (sha256, spki), ok in signed.items()]
        db = self.store.db
        try:
            with transaction(db, f"{self.store.path}: cannot keep derived facts"):
                db.conn.executemany(_KEEP_FACTS, facts)
                db.conn.executemany(_KEEP_CHECK, checks)
        except StoreError as e:
            # A cycle does not fail for its cache: the next process derives these again.
            log.warning("%s; they will be derived again", e)

    def _read(self, sql: str, *params: str) -> tuple[object, ...] | None:
        if threading.get_ident() != self._owner:
            return None
        try:
            row: tuple[object, ...] | None = self.store.db.execute(sql, params).fetchone()
        except sqlite3.Error:
            return None  # unreadable (closed, corrupt): deriving again is always right
        return row
