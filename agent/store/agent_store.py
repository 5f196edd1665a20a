"""The agent's own database: its inventory, the snapshots it sent, the reports it co-signed,
and each pairing's trusted state (`agent.exchange.trusted`), written in the transaction of what
it guards: a receipt with the snapshot it marks sent, the peer's version with its key rotation.

The inventory keeps history: a certificate that drops out of a collection is marked not present,
never deleted, and each source keeps the time it first reported a certificate. Times are stored
as RFC 3339 UTC strings with a `Z`; certificates as their DER, from which every derived field is
recomputed on reading (the derived columns are there for people and queries), or rebuilt from the
facts the agent's FactsCache keeps (`derived_facts`, agent.store.facts_cache) when installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import marshal
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlite_utils

from invsync.agent.errors import StoreError
from invsync.agent.exchange.chain_reset import (
    CHAIN_RESET_PAYLOAD_TYPE,
    ChainReset,
    decode_chain_reset,
    reset_body,
)
from invsync.agent.exchange.delta import accepted_header
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keyring import Rotation, rotation_from_row, rotation_row
from invsync.agent.exchange.keys import VerifyKey, verify_key_from_spki_der
from invsync.agent.exchange.record_codec import facts_from_bytes, facts_to_bytes
from invsync.agent.exchange.server_keyring import ServerRotation
from invsync.agent.exchange.snapshot import Base, Served, decode_payload
from invsync.agent.exchange.trusted import LogCheckpoint, TrustedState, Verified
from invsync.agent.model.findings import Finding
from invsync.agent.model.last_values import LastValues, same_stored
from invsync.agent.model.record import SHA256_OF as _SHA256
from invsync.agent.model.record import (
    CertRecord,
    Revocation,
    SourceRef,
    parse_certificate,
)
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.store import sightings
from invsync.agent.store.db import Migration, open_database, transaction
from invsync.agent.store.kept_sources import KeptSources
from invsync.agent.store.notifications import NotificationStore, m018_notifications
from invsync.agent.store.snapshot_blobs import META_COLUMNS, SnapshotBlobs
from invsync.agent.store.whole_chain import chain_root, placement
from invsync.agent.times import parse_rfc3339
from invsync.agent.times import rfc3339 as _utc_text

_SCHEMA_V1 = (
    """CREATE TABLE certificates (
        sha256 TEXT PRIMARY KEY NOT NULL, der BLOB NOT NULL,
        subject TEXT NOT NULL, issuer TEXT NOT NULL, serial_hex TEXT NOT NULL,
        not_before TEXT NOT NULL, not_after TEXT NOT NULL,
        spki_sha256 TEXT NOT NULL, doppelganger_key TEXT NOT NULL,
        ski TEXT, aki TEXT, is_ca INTEGER NOT NULL,
        operator TEXT, lifecycle TEXT,
        revoked_at TEXT, revocation_reason TEXT, revocation_source TEXT,
        present INTEGER NOT NULL)""",
    "CREATE INDEX certificates_doppelganger_key ON certificates (doppelganger_key)",
    """CREATE TABLE certificate_sources (
        sha256 TEXT NOT NULL REFERENCES certificates (sha256),
        kind TEXT NOT NULL, location TEXT NOT NULL,
        first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
        PRIMARY KEY (sha256, kind, location))""",
    """CREATE TABLE sent_snapshots (
        pairing TEXT NOT NULL, version INTEGER NOT NULL,
        payload BLOB NOT NULL, payload_sha256 TEXT NOT NULL, payload_type TEXT NOT NULL,
        signatures TEXT NOT NULL, issued_at TEXT NOT NULL, expires_at TEXT NOT NULL,
        PRIMARY KEY (pairing, version))""",
    """CREATE TABLE cosigned_reports (
        report_id TEXT PRIMARY KEY NOT NULL, pairing TEXT NOT NULL, signed_at TEXT NOT NULL)""",
)


def m001_agent_schema(db: sqlite_utils.Database) -> None:
    """The first schema: inventory, its sources, sent snapshots, co-signed reports."""
    for statement in _SCHEMA_V1:
        db.execute(statement)


def m002_certificate_facts(db: sqlite_utils.Database) -> None:
    """Facts beside each certificate: attribution, CCADB disclosure, audit scope, revocation
    evidence (a serialized `invsync.v1.Record` without its DER), and the CRL signature hash."""
    db.execute("ALTER TABLE certificates ADD COLUMN attribution TEXT NOT NULL DEFAULT ''")
    db.execute("ALTER TABLE certificates ADD COLUMN revocation_crl_hash TEXT")
    db.execute("ALTER TABLE certificates ADD COLUMN facts BLOB")


def m003_pending_snapshots(db: sqlite_utils.Database) -> None:
    """A snapshot is kept as pending before it is pushed and marked sent once its receipt is in,
    so a push whose receipt was lost is re-pushed byte for byte instead of being built anew."""
    db.execute("ALTER TABLE sent_snapshots ADD COLUMN pending INTEGER NOT NULL DEFAULT 0")


def m004_peer_key_rotations(db: sqlite_utils.Database) -> None:
    """Signing keys a peer rotated to (agent.exchange.keyring), accepted from its snapshots signed
    by both the old and the new key; the same columns as the server's table."""
    db.execute(
        """CREATE TABLE peer_key_rotations (
        party TEXT NOT NULL, pairing TEXT NOT NULL, version INTEGER NOT NULL,
        new_key BLOB NOT NULL, old_keys TEXT NOT NULL, accepted_at TEXT NOT NULL,
        PRIMARY KEY (party, pairing, version))"""
    )


_TRUSTED_STATE = (
    """CREATE TABLE trusted_state (
        pairing TEXT PRIMARY KEY NOT NULL,
        own_version INTEGER, own_digest TEXT, peer_version INTEGER, peer_digest TEXT,
        checkpoint_size INTEGER, checkpoint_root BLOB, checkpoint_note BLOB,
        updated_at TEXT NOT NULL)""",
    """CREATE TABLE receipts (
        pairing TEXT NOT NULL, version INTEGER NOT NULL,
        payload_type TEXT NOT NULL, payload BLOB NOT NULL, signatures TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (pairing, version))""",
    """CREATE TABLE refused_inputs (
        pairing TEXT NOT NULL, rule TEXT NOT NULL, finding TEXT NOT NULL,
        refused_at TEXT NOT NULL)""",
)


def m005_trusted_state(db: sqlite_utils.Database) -> None:
    """Each pairing's trusted state (agent.exchange.trusted): the last own and peer snapshots
    verified (version, digest) and log checkpoint, the server's receipts as received, and the
    peer snapshots refused as rollbacks with their finding. A database from before starts with
    an empty state: the next receipt and peer snapshot set it."""
    for statement in _TRUSTED_STATE:
        db.execute(statement)


def m006_one_log_per_agent(db: sqlite_utils.Database) -> None:
    """One log per agent: its origin (the server's name) and the last checkpoint verified, shared
    by every pairing, so two pairings cannot be shown two logs unnoticed; it starts from the
    largest checkpoint a pairing held (the next check proves the others' consistency no more:
    they were each consistent with their own). A receipt's entry is checked once (`checked`)."""
    db.execute(
        """CREATE TABLE log_state (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1), origin TEXT NOT NULL,
        checkpoint_size INTEGER, checkpoint_root BLOB, checkpoint_note BLOB,
        updated_at TEXT NOT NULL)"""
    )
    db.execute(
        "INSERT INTO log_state (id, origin, checkpoint_size, checkpoint_root, checkpoint_note,"
        " updated_at) SELECT 1, '', checkpoint_size, checkpoint_root, checkpoint_note, updated_at"
        " FROM trusted_state WHERE checkpoint_size IS NOT NULL"
        " ORDER BY checkpoint_size DESC LIMIT 1"
    )
    db.execute("ALTER TABLE receipts ADD COLUMN checked INTEGER NOT NULL DEFAULT 0")


def m007_pending_chain_resets(db: sqlite_utils.Database) -> None:
    """Chain resets read from the log for a pairing other than the one being checked (the log is
    one for all pairings), kept until that pairing's check applies them: the checkpoint that
    moved past them is saved in the same transaction, so none is lost to a crash."""
    db.execute(
        """CREATE TABLE pending_chain_resets (
        pairing TEXT NOT NULL, statement BLOB NOT NULL, read_at TEXT NOT NULL,
        PRIMARY KEY (pairing, statement))"""
    )


def m008_peer_snapshots(db: sqlite_utils.Database) -> None:
    """The peer's snapshots this agent verified, as served, the last two of each pairing: the
    next cycle compares the peer's current snapshot with the one before, which it verified the
    cycle before, and need not fetch it again (issue 13). Verified again whenever read."""
    db.execute(
        """CREATE TABLE peer_snapshots (
        pairing TEXT NOT NULL, version INTEGER NOT NULL, payload_type TEXT NOT NULL,
        payload BLOB NOT NULL, signatures TEXT NOT NULL, kept_at TEXT NOT NULL,
        PRIMARY KEY (pairing, version))"""
    )


def m009_whole_sets(db: sqlite_utils.Database) -> None:
    """The whole set of each delta snapshot kept (agent.exchange.delta): ours, which our next
    delta builds on and our reports compare, and the peer's, which its next delta builds on.
    NULL for a full snapshot (its payload is its whole set) and for one restored from the log."""
    db.execute("ALTER TABLE sent_snapshots ADD COLUMN full BLOB")
    db.execute("ALTER TABLE peer_snapshots ADD COLUMN full BLOB")


def m010_derived_facts(db: sqlite_utils.Database) -> None:
    """What is derived from certificates alone, kept across processes (agent.store.facts_cache):
    each one's parsed fields as JSON (agent.model.derived) and the outcomes of its signature
    checked with an issuer's key, so a steady cycle parses and verifies only new certificates.
    Either is derived again when its format (parser release) differs."""
    db.execute("CREATE TABLE derived_facts (sha256 TEXT PRIMARY KEY NOT NULL, facts TEXT NOT NULL)")
    db.execute(
        """CREATE TABLE signature_checks (
        sha256 TEXT NOT NULL, spki_sha256 TEXT NOT NULL, format TEXT NOT NULL,
        signed INTEGER NOT NULL, PRIMARY KEY (sha256, spki_sha256))"""
    )


def m011_certificate_row_digests(db: sqlite_utils.Database) -> None:
    """The SHA-256 of each certificate row's other columns as the collection or import that
    wrote it made them, so a collection rewrites only the rows whose content changed. NULL
    (written before, or by SQL that changed the row: it must set NULL) is written again."""
    db.execute("ALTER TABLE certificates ADD COLUMN row_digest TEXT")


def m012_peer_snapshot_digests(db: sqlite_utils.Database) -> None:
    """The SHA-256 of each kept peer snapshot's payload, as sent snapshots have had since the
    first schema: a cycle reads a kept snapshot's blobs once under it (agent.store.snapshot_blobs),
    and names the base it holds without reading the payload."""
    db.execute("ALTER TABLE peer_snapshots ADD COLUMN payload_sha256 TEXT")
    rowids = [row[0] for row in db.execute("SELECT rowid FROM peer_snapshots").fetchall()]
    for rowid in rowids:  # one payload in memory at a time
        row = db.execute("SELECT payload FROM peer_snapshots WHERE rowid = ?", [rowid]).fetchone()
        digest = hashlib.sha256(bytes(row[0])).hexdigest()
        db.execute("UPDATE peer_snapshots SET payload_sha256 = ? WHERE rowid = ?", [digest, rowid])


def m013_whole_set_chains(db: sqlite_utils.Database) -> None:
    """Each kept snapshot's whole set is stored once every few versions and rebuilt from its
    chain of deltas between (agent.store.whole_chain): `chain` counts the deltas since the
    stored one, 0 when the row holds it. A row written before holds its set when `full` does;
    the others stay as they were read (a full snapshot's payload, or not known here). A chain
    is followed by payload digest: indexed, or each step would scan the table, reading past
    every row's blobs to the digest column added after them."""
    for table in ("sent_snapshots", "peer_snapshots"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN chain INTEGER")
        db.execute(f"UPDATE {table} SET chain = 0 WHERE full IS NOT NULL")
        db.execute(f"CREATE INDEX {table}_by_digest ON {table} (pairing, payload_sha256)")


def m014_source_reads(db: sqlite_utils.Database) -> None:
    """A source's sightings written once per read (agent.store.sightings): a row its source
    still lists is `listed`, its last sighting that source's last read in `source_reads`. The
    rows written before keep their own sightings (not listed) until a collection lists them."""
    db.execute("ALTER TABLE certificate_sources ADD COLUMN listed INTEGER NOT NULL DEFAULT 0")
    db.execute(
        """CREATE TABLE source_reads (
        kind TEXT NOT NULL, location TEXT NOT NULL, read_at TEXT NOT NULL,
        PRIMARY KEY (kind, location))"""
    )


def m015_snapshot_columns_indexed(db: sqlite_utils.Database) -> None:
    """A kept snapshot's columns but its blobs, read from indexes (agent.store.snapshot_blobs):
    the columns added after the blobs (`payload_sha256`, `chain`, ...) were read past the
    payload and whole set of the row, 60 MB of overflow pages at 100,000 certificates, each
    time a cycle asked for the latest version's digest or chain."""
    for table, columns in META_COLUMNS.items():
        db.execute(f"CREATE INDEX {table}_meta ON {table} ({columns})")
        db.execute(f"DROP INDEX IF EXISTS {table}_by_digest")  # m013 made it from bb1f5bb on
        db.execute(
            f"CREATE INDEX {table}_by_digest ON {table} (pairing, payload_sha256, version, chain)"
        )


def m016_server_key_rotations(db: sqlite_utils.Database) -> None:
    """The exchange server's key rotations this agent followed (agent.exchange.server_keyring):
    each SERVER_KEY log entry verified with the key it replaces and the key it announces."""
    db.execute(
        """CREATE TABLE server_key_rotations (
        log_index INTEGER PRIMARY KEY NOT NULL, new_key BLOB NOT NULL, old_key BLOB NOT NULL,
        announced_at TEXT NOT NULL, recorded_at TEXT NOT NULL)"""
    )


def m017_own_signing_keys(db: sqlite_utils.Database) -> None:
    """Every signing key this party was configured with, public part: after a rotation its
    configuration names the new key alone, and its evidence bundles still need the first one
    to verify its earliest snapshots (agent.evidence.remote)."""
    db.execute(
        """CREATE TABLE own_signing_keys (
        keyid TEXT PRIMARY KEY NOT NULL, spki BLOB NOT NULL, first_seen TEXT NOT NULL)"""
    )


MIGRATIONS: tuple[Migration, ...] = (
    m001_agent_schema,
    m002_certificate_facts,
    m003_pending_snapshots,
    m004_peer_key_rotations,
    m005_trusted_state,
    m006_one_log_per_agent,
    m007_pending_chain_resets,
    m008_peer_snapshots,
    m009_whole_sets,
    m010_derived_facts,
    m011_certificate_row_digests,
    m012_peer_snapshot_digests,
    m013_whole_set_chains,
    m014_source_reads,
    m015_snapshot_columns_indexed,
    m016_server_key_rotations,
    m017_own_signing_keys,
    m018_notifications,
)

_CERT_COLUMNS = (
    "sha256", "der", "subject", "issuer", "serial_hex", "not_before", "not_after", "spki_sha256",
    "doppelganger_key", "ski", "aki", "is_ca", "operator", "lifecycle", "revoked_at",
    "revocation_reason", "revocation_source", "present", "attribution", "revocation_crl_hash",
    "facts", "row_digest",
)  # fmt: skip


def _insert(table: str, columns: tuple[str, ...]) -> str:
    """An INSERT of named parameters, one per column."""
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join(':' + c for c in columns)})"


def _upsert(table: str, columns: tuple[str, ...]) -> str:
    """`_insert` that, on a conflict over the first column, updates every other column."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return f"{_insert(table, columns)} ON CONFLICT ({columns[0]}) DO UPDATE SET {updates}"


_UPSERT_CERT = _upsert("certificates", _CERT_COLUMNS)
# A known source keeps its first_seen: provenance says since when it has reported the certificate.
# What a record is rebuilt from: its DER (every derived column is derived again, or read from
# the facts cache) and what the collection stated.
_RECORD_COLUMNS = (
    "sha256, der, operator, lifecycle, revoked_at, revocation_reason, revocation_source,"
    " revocation_crl_hash, facts"
)
_BATCH = 500  # certificates per `IN (...)`: far below SQLite's limit on bound values


_SENT_COLUMNS = (
    "pairing", "version", "payload", "payload_sha256", "payload_type", "signatures",
    "issued_at", "expires_at", "pending", "full", "chain",
)  # fmt: skip
_INSERT_SENT = _insert("sent_snapshots", _SENT_COLUMNS)


_STATE_COLUMNS = (
    "pairing", "own_version", "own_digest", "peer_version", "peer_digest", "checkpoint_size",
    "checkpoint_root", "checkpoint_note", "updated_at",
)  # fmt: skip
_UPSERT_STATE = _upsert("trusted_state", _STATE_COLUMNS)
# A version's first receipt is kept: the server answers a re-push with the one it stored.
_INSERT_RECEIPT = (
    "INSERT INTO receipts (pairing, version, payload_type, payload, signatures, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pairing, version) DO NOTHING"
)
_ENSURE_LOG = "INSERT OR IGNORE INTO log_state (id, origin, updated_at) VALUES (1, '', ?)"
_SET_ORIGIN = "UPDATE log_state SET origin = ? WHERE id = 1 AND origin = ''"
# The shared checkpoint never shrinks, whichever pairing's (maybe older) state is saved.
_SET_CHECKPOINT = (
    "UPDATE log_state SET checkpoint_size = ?, checkpoint_root = ?, checkpoint_note = ?,"
    " updated_at = ? WHERE id = 1 AND (checkpoint_size IS NULL OR checkpoint_size <= ?)"
)
_SENT, _PEER = "sent_snapshots", "peer_snapshots"
_LATEST = "pairing = ? ORDER BY version DESC LIMIT 1"
_KEEP_PEER = (
    "INSERT OR REPLACE INTO peer_snapshots (pairing, version, payload_type, payload, signatures,"
    " kept_at, full, chain, payload_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ROTATION = (
    "INSERT INTO peer_key_rotations (party, pairing, version, new_key, old_keys, accepted_at)"
    " VALUES (:party, :pairing, :version, :new_key, :old_keys, :accepted_at)"
    " ON CONFLICT (party, pairing, version) DO NOTHING"
)


@dataclass(frozen=True)
class Refusal:
    """A peer snapshot the trusted state refused, under its rule, with the finding it makes."""

    rule: str
    finding: Finding
    refused_at: datetime


@dataclass(frozen=True)
class SentSnapshot:
    """A snapshot this agent built and signed, kept byte for byte as it was sent."""

    pairing: str
    version: int
    payload: bytes
    payload_sha256: str  # lowercase hex
    payload_type: str
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)
    issued_at: datetime
    expires_at: datetime
    # A delta's whole set (agent.exchange.delta); None for a full snapshot, whose payload is
    # its whole set, and for a delta restored from the log, whose set this agent lacks.
    full: bytes | None = None

    @property
    def whole(self) -> bytes | None:
        """Its whole set: `full` for a delta, the payload for a full snapshot; None if unknown."""
        if self.full is not None:
            return self.full
        # Built here: its header is read alone, not its tens of megabytes of records.
        return None if accepted_header(self.payload).delta else self.payload

    def decoded(self) -> Snapshot:
        """The snapshot, whole; MalformedSnapshot for a delta whose whole set is unknown here."""
        return decode_payload(self.payload, full=self.full or b"")


class AgentStore:
    """The agent's SQLite database (see the module docstring)."""

    def __init__(self, path: Path, *, create: bool = True, keeps: bool = True) -> None:
        """`keeps`: keep each stored record's row digest for the next collection (a daemon's
        store; a one-shot process's has no next one)."""
        self.path = path
        self.db = open_database(path, MIGRATIONS, create=create)
        self.blobs = SnapshotBlobs(self.db)
        self.notifications = NotificationStore(self.db)  # the outbox (agent.notify)
        # Each stored record's row digest: a steady collection encodes only changed rows.
        # And its sources as stored, worked out without reading them back (`as_stored`).
        self._kept_sources = KeptSources()
        self._row_digests: LastValues[str] | None = LastValues(same_stored) if keeps else None
        # The present rows' digests as the last collection left them (with `keeps`), and what
        # each source listed: kept while `_kept_sources` holds, like the sources.
        self._present: dict[str, str] | None = None
        self._listed: sightings.Listed | None = None

    def close(self) -> None:
        """Close the database connection."""
        self.blobs.forget()
        if self._row_digests is not None:
            self._row_digests.forget()
        self._kept_sources.forget()
        self._present, self._listed = None, None
        self.db.close()

    def forget_blobs(self, pairing: str | None = None) -> None:
        """Let go of the snapshot blobs read or written so far (agent.store.snapshot_blobs):
        one pairing's, or every pairing's (None)."""
        self.blobs.forget(pairing)

    def __enter__(self) -> AgentStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def replace_inventory(self, records: Sequence[CertRecord], now: datetime) -> None:
        """Make `records` the present inventory in one transaction; others stay, not present.

        Only what changed is written: a row whose content is the stored one (by the digest the
        collection that wrote it kept) keeps its bytes on disk, and only records no longer
        listed are marked not present. Each source's last sighting is written for every record.
        A row whose DER no longer hashes to its SHA-256 (damaged on disk) is written again,
        once another connection wrote the database (or at a process's first collection): a
        daemon's later collections read back no row, knowing the digests of those it wrote. A
        row edited by hand keeps the edit until its record changes: whoever writes this table
        with SQL (from another connection) sets its `row_digest` to NULL, and the next
        collection writes it again."""
        rfc3339(now)  # a naive time is refused before anything is written
        seen = sightings.sightings_of(records, rfc3339)  # and so is a record's
        digests = _row_digests(records, self._row_digests)
        # `info.sha256`, not the property: each pass over 100,000 records makes no call each.
        shas = list(map(_SHA256, records))
        listed = dict(zip(shas, digests, strict=True))
        with transaction(self.db, f"{self.path}: cannot store the inventory"):
            # Read first, in the transaction: it opens the snapshot the writes below build on
            # (another connection's commit after it makes them fail), and this store's own
            # commit leaves it as it is.
            version = self._data_version()
            # None unless only this store wrote since its last collection (agent.store.
            # kept_sources); and a certificate listed twice is worked out from the database.
            before = self._kept_sources.before_write(version)
            if len(listed) != len(records):
                before = None
            held = self._present if before is not None else None
            if held is None:
                held = self._present_digests(records, check_der=before is None)
            gone = [(sha256,) for sha256 in held if sha256 not in listed]
            self.db.conn.executemany("UPDATE certificates SET present = 0 WHERE sha256 = ?", gone)
            # Made as written: at a cold cycle every row changed, and a list of them all
            # (a dict of 20 columns each) was the collection's peak.
            changed = (
                _certificate_row(record, digest)
                for record, sha, digest in zip(records, shas, digests, strict=True)
                if held.get(sha) != digest
            )
            self.db.conn.executemany(_UPSERT_CERT, changed)
            listed_before = self._listed if before is not None else None
            self._listed = None  # until this write commits
            listed_after = sightings.write(self.db, seen, listed_before)
            stored = self._kept_sources.work_out(records, shas, before, self._sources_of)
        self._kept_sources.keep(records, stored, version)  # once committed
        self._listed = listed_after
        # Then the present rows are these, with these digests: read again while no other
        # connection writes (`before`), instead of 100,000 rows from the database. Not when a
        # certificate was listed twice: each copy whose digest differed was written, in order,
        # so the row may hold another copy than the one `listed` kept.
        keeps = self._row_digests is not None and len(listed) == len(records)
        self._present = listed if keeps else None

    def _present_digests(self, records: Sequence[CertRecord], *, check_der: bool) -> dict[str, Any]:
        """Each present row's digest by SHA-256; with `check_der`, None for a row of `records`
        whose DER is not the record's (which hashes to the SHA-256 both are keyed by: the same
        check as hashing the row's, without hashing 50 MB)."""
        if not check_der:
            return dict(
                self.db.execute("SELECT sha256, row_digest FROM certificates WHERE present = 1")
            )
        listed = {record.sha256: record.info.der for record in records}
        return {
            sha256: digest if listed.get(sha256) == der else None
            for sha256, digest, der in self.db.execute(
                "SELECT sha256, row_digest, der FROM certificates WHERE present = 1"
            )
        }

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections (PRAGMA data_version)."""
        version: int = self.db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def import_records(self, records: Sequence[CertRecord], now: datetime) -> None:
        """Add or update `records` in one transaction; the rest of the inventory is untouched.

        A certificate already held keeps its other sources; the facts this import states
        replace the stored ones (the caller assembles them with what was stored).
        """
        with transaction(self.db, f"{self.path}: cannot import into the inventory"):
            self._upsert(records, now)

    def _upsert(self, records: Sequence[CertRecord], now: datetime) -> None:
        self._kept_sources.forget()  # and with it `_present` (read while `before` holds)
        self._listed = None
        certificates, sources = _rows(records, now)
        self.db.conn.executemany(_UPSERT_CERT, certificates)
        self.db.conn.executemany(sightings.UPSERT_ROW, sources)

    def as_stored(self, records: Sequence[CertRecord]) -> list[CertRecord]:
        """What `inventory()` reads back right after `replace_inventory(records, ...)`, without
        reading the certificates again (issue 13): `records` by SHA-256, each with every source
        the store holds for it (first seen at the earliest, last seen at the latest sighting,
        and sources no longer reporting it). Everything else a record holds is stored as it
        is and read back equal (a test holds both to each other on real data); a row edited
        by hand without clearing its `row_digest` (see `replace_inventory`) is the exception:
        the collection's values stand for it here, the edit in `inventory()`. The sources are
        the ones `replace_inventory(records, ...)` worked out (agent.store.kept_sources), or
        read from the database when another list is given."""
        sources = self._kept_sources.for_records(records)
        if sources is None:
            sources = self._sources()
        return [
            record.with_sources(sources.get(record.info.sha256, ()))
            for record in sorted(records, key=_SHA256)
        ]

    def record(self, sha256: str) -> CertRecord | None:
        """One record, present or not, with every source that ever reported it."""
        rows = self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM certificates WHERE sha256 = ?", [sha256.upper()]
        )
        sources = self._sources([sha256.upper()])
        return next((self._record(row, sources.get(row["sha256"], ())) for row in rows), None)

    def inventory(self) -> list[CertRecord]:
        """The present records, sorted by SHA-256, rebuilt from their stored DER."""
        rows = self._rows(
            f"SELECT {_RECORD_COLUMNS} FROM certificates WHERE present = 1 ORDER BY sha256"
        )
        sources = self._sources()
        return [self._record(row, sources.get(row["sha256"], ())) for row in rows]

    def count(self) -> int:
        """How many records the latest collection holds."""
        return int(
            self.db.execute("SELECT count(*) FROM certificates WHERE present = 1").fetchone()[0]
        )

    def record_sent_snapshot(
        self,
        pairing: str,
        version: int,
        payload: bytes,
        payload_type: str,
        signatures: list[tuple[str, bytes]],
        issued_at: datetime,
        expires_at: datetime,
        *,
        pending: bool = False,
        full: bytes | None = None,
    ) -> None:
        """Keep a sent snapshot (with its whole set `full` if a delta); the same bytes again are
        a no-op, other bytes are refused.

        With `pending`, the snapshot is kept before it is pushed, and is not yet the latest sent
        one: `mark_sent` makes it so once the server's receipt arrived.
        """
        row = {
            "pairing": pairing,
            "version": version,
            "payload": payload,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "payload_type": payload_type,
            "signatures": _signatures_json(signatures),
            "issued_at": rfc3339(issued_at),
            "expires_at": rfc3339(expires_at),
            "pending": int(pending),
        }
        pruned: list[int] = []
        with transaction(self.db, f"{self.path}: cannot record snapshot {pairing} v{version}"):
            known = self._snapshot_row(pairing, version)
            if known is not None:
                self._check_same_payload(known, payload)
                if not pending:
                    pruned = self._set_sent(pairing, version)
            else:
                row["full"], row["chain"] = placement(self.db, _SENT, pairing, payload, full)
                self.db.execute(_INSERT_SENT, row)
                if not pending:
                    pruned = self._prune_whole_sets(pairing, version)
        self._let_go(pairing, pruned)
        if known is None:
            self.blobs.hold((_SENT, pairing, version, str(row["payload_sha256"])), payload, full)

    def _prune_whole_sets(self, pairing: str, sent: int) -> list[int]:
        """Let go of the whole sets of our snapshots before `sent - 1`, `sent` being the latest
        sent one, but for the one `sent - 1`'s is rebuilt from; the versions pruned.

        A delta's whole set is what the next delta builds on (the latest sent) and what the
        report check compares as our previous snapshot (the one before), so those two stay,
        with the stored set their chain starts from (agent.store.whole_chain), and a pending
        one above them. Nothing reads an older one: the signed payloads stay, and with them
        every entry of the log. Kept, each stored set would stay in the database: 57 MB at
        100,000 certificates (issue 13). Counted from the latest sent, never from a pending
        one: a pending snapshot may be dropped, and the report check then compares the latest
        sent with the one before it."""
        root = chain_root(self.db, _SENT, pairing, sent - 1)
        below = sent - 1 if root is None else min(root, sent - 1)
        older = "pairing = ? AND version < ? AND (full IS NOT NULL OR chain > 0)"
        params = [pairing, below]
        rows = self.db.execute(f"SELECT version FROM sent_snapshots WHERE {older}", params)
        versions = [int(v) for (v,) in rows.fetchall()]
        pruned = f"UPDATE sent_snapshots SET full = NULL, chain = NULL WHERE {older}"
        self.db.execute(pruned, params)
        return versions

    def pending_snapshot(self, pairing: str) -> SentSnapshot | None:
        """The snapshot built and pushed for `pairing` whose receipt has not arrived, or None."""
        where = "pairing = ? AND pending = 1 ORDER BY version"
        return next((_sent(row) for row in self.blobs.rows(_SENT, where, [pairing])), None)

    def mark_sent(self, pairing: str, version: int) -> None:
        """The server's receipt for a pending snapshot arrived: it is now sent."""
        with transaction(self.db, f"{self.path}: cannot mark snapshot {pairing} v{version} sent"):
            pruned = self._set_sent(pairing, version)
        self._let_go(pairing, pruned)

    def record_receipt(
        self, pairing: str, version: int, state: TrustedState, now: datetime
    ) -> None:
        """The server's receipt for `version`, verified into `state`: in one transaction, the
        snapshot is marked sent, the receipt kept as received and the state saved."""
        receipt = state.receipts.get(version)
        if receipt is None:
            raise ValueError(f"the trusted state holds no receipt for version {version}")
        signatures = _signatures_json([(s.keyid, s.sig) for s in receipt.signatures])
        row = [pairing, version, receipt.payload_type, receipt.payload, signatures, rfc3339(now)]
        with transaction(self.db, f"{self.path}: cannot record the receipt {pairing} v{version}"):
            pruned = self._set_sent(pairing, version)
            self.db.execute(_INSERT_RECEIPT, row)
            self._save_state(pairing, state, now)
        self._let_go(pairing, pruned)

    def record_peer(
        self, pairing: str, state: TrustedState, rotation: Rotation | None, now: datetime
    ) -> None:
        """A peer snapshot verified into `state`: the state and the key rotation the snapshot
        carried (if any) in one transaction."""
        with transaction(self.db, f"{self.path}: cannot record the peer's snapshot of {pairing}"):
            if rotation is not None:
                self.db.execute(_INSERT_ROTATION, rotation_row(rotation, rfc3339(now)))
            self._save_state(pairing, state, now)

    def record_checkpoint(
        self,
        pairing: str,
        state: TrustedState,
        now: datetime,
        *,
        checked: Sequence[int] = (),
        peer_resets: Sequence[ChainReset] = (),
        deferred: Sequence[ChainReset] = (),
    ) -> None:
        """A log checkpoint the caller verified and `state` now holds, in one transaction with:
        the versions whose receipts' entries it checked against it; the pairing's chain resets
        it applied (the peer's key rotations they set aside removed: `peer_resets`, and the
        pairing's pending resets consumed); and the resets it read of other pairings, kept
        pending for their own check (`deferred`)."""
        with transaction(self.db, f"{self.path}: cannot record the checkpoint of {pairing}"):
            self.db.execute("DELETE FROM pending_chain_resets WHERE pairing = ?", [pairing])
            for reset in deferred:
                self.db.execute(
                    "INSERT OR IGNORE INTO pending_chain_resets (pairing, statement, read_at)"
                    " VALUES (?, ?, ?)",
                    [reset.pairing, reset_body(reset), _utc_text(now)],
                )
            self._save_state(pairing, state, now)
            sql = "UPDATE receipts SET checked = 1 WHERE pairing = ? AND version = ?"
            for version in checked:
                self.db.execute(sql, [pairing, version])
            for reset in peer_resets:
                self.db.execute(
                    "DELETE FROM peer_key_rotations WHERE party = ? AND pairing = ? "
                    "AND version > ?",
                    [reset.party, reset.pairing, reset.continues_from],
                )
                self.db.execute(
                    "DELETE FROM peer_snapshots WHERE pairing = ? AND version > ?",
                    [reset.pairing, reset.continues_from],
                )

    def pending_chain_resets(self, pairing: str) -> list[ChainReset]:
        """The chain resets of `pairing` read from the log while checking another pairing."""
        rows = self.db.execute(
            "SELECT statement FROM pending_chain_resets WHERE pairing = ? ORDER BY rowid",
            [pairing],
        ).fetchall()
        where = f"{self.path}: pending chain reset of {pairing}"
        return [
            decode_chain_reset(Envelope(CHAIN_RESET_PAYLOAD_TYPE, bytes(row[0]), ()), where)
            for row in rows
        ]

    def unchecked_receipts(self, pairing: str) -> list[int]:
        """The versions whose receipts' log entries the log watch has not checked yet."""
        sql = "SELECT version FROM receipts WHERE pairing = ? AND checked = 0 ORDER BY version"
        return [int(row[0]) for row in self.db.execute(sql, [pairing]).fetchall()]

    def adopt_logged_snapshot(self, sent: SentSnapshot, state: TrustedState, now: datetime) -> None:
        """Our own snapshot as the exchange's log holds it, newer than any sent from this
        database (restored from a backup), verified into `state` with its receipt: in one
        transaction it becomes the latest sent, a pending snapshot it supersedes (same or lower
        version: never accepted) is dropped, the receipt is kept and the state saved."""
        pairing, version = sent.pairing, sent.version
        receipt = state.receipts.get(version)
        if receipt is None:
            raise ValueError(f"the trusted state holds no receipt for version {version}")
        signatures = _signatures_json([(s.keyid, s.sig) for s in receipt.signatures])
        row = [pairing, version, receipt.payload_type, receipt.payload, signatures, rfc3339(now)]
        with transaction(self.db, f"{self.path}: cannot adopt snapshot {pairing} v{version}"):
            sql = "DELETE FROM sent_snapshots WHERE pairing = ? AND version <= ? AND pending = 1"
            self.db.execute(sql, [pairing, version])
            self.blobs.drop(_SENT, pairing, version)  # a pending one deleted just above
            known = self._snapshot_row(pairing, version)
            if known is not None:
                self._check_same_payload(known, sent.payload)
            else:
                stored = placement(self.db, _SENT, pairing, sent.payload, sent.full)
                self.db.execute(_INSERT_SENT, _sent_row(sent, *stored))
            self.db.execute(_INSERT_RECEIPT, row)
            self._save_state(pairing, state, now)

    def trusted_state(self, pairing: str) -> TrustedState:
        """The pairing's trusted state as last saved, with the agent's one log origin and
        checkpoint; empty before the first receipt."""
        rows = self._rows("SELECT * FROM trusted_state WHERE pairing = ?", [pairing])
        sql = "SELECT * FROM receipts WHERE pairing = ? ORDER BY version"
        receipts = {row["version"]: _envelope(row) for row in self._rows(sql, [pairing])}
        own = _state(rows[0], receipts) if rows else TrustedState(receipts=receipts)
        logs = self._rows("SELECT * FROM log_state WHERE id = 1")
        if not logs:
            return replace(own, checkpoint=None)
        return replace(own, checkpoint=_checkpoint(logs[0]), origin=logs[0]["origin"])

    def record_refusal(self, pairing: str, rule: str, finding: Finding, now: datetime) -> None:
        """Keep a refused peer snapshot's finding (the state itself did not change)."""
        sql = "INSERT INTO refused_inputs (pairing, rule, finding, refused_at) VALUES (?, ?, ?, ?)"
        row = [pairing, rule, json.dumps(finding.to_json(), sort_keys=True), rfc3339(now)]
        with transaction(self.db, f"{self.path}: cannot record a refusal in {pairing}"):
            self.db.execute(sql, row)

    def refusals(self, pairing: str) -> list[Refusal]:
        """The pairing's refused peer snapshots, oldest first."""
        sql = "SELECT * FROM refused_inputs WHERE pairing = ? ORDER BY rowid"
        return [_refusal(row) for row in self._rows(sql, [pairing])]

    def _save_state(self, pairing: str, state: TrustedState, now: datetime) -> None:
        self.db.execute(_UPSERT_STATE, _state_row(pairing, state, now))
        self.db.execute(_ENSURE_LOG, [rfc3339(now)])
        if state.origin:
            self.db.execute(_SET_ORIGIN, [state.origin])
        held = state.checkpoint
        if held is not None:
            row = [held.size, held.root_hash, held.note, rfc3339(now), held.size]
            self.db.execute(_SET_CHECKPOINT, row)

    def drop_pending(self, pairing: str, version: int) -> None:
        """Forget a pending snapshot the server refused: its version was never accepted."""
        sql = "DELETE FROM sent_snapshots WHERE pairing = ? AND version = ? AND pending = 1"
        with transaction(self.db, f"{self.path}: cannot drop snapshot {pairing} v{version}"):
            self.db.execute(sql, [pairing, version])

    def latest_sent_snapshot(self, pairing: str) -> SentSnapshot | None:
        """The highest version sent (its receipt arrived) for `pairing`, or None."""
        where = "pairing = ? AND pending = 0 ORDER BY version DESC LIMIT 1"
        return next((_sent(row) for row in self.blobs.rows(_SENT, where, [pairing])), None)

    def pushed_snapshot(self, pairing: str, version: int) -> SentSnapshot | None:
        """The snapshot built and pushed for `pairing` at `version`, sent or pending, or None."""
        return self._snapshot_row(pairing, version)

    def sent_snapshot(self, pairing: str, version: int) -> SentSnapshot | None:
        """The snapshot sent (its receipt arrived) for `pairing` at `version`, or None."""
        where = "pairing = ? AND version = ? AND pending = 0"
        return next((_sent(row) for row in self.blobs.rows(_SENT, where, [pairing, version])), None)

    def _snapshot_row(self, pairing: str, version: int) -> SentSnapshot | None:
        where = "pairing = ? AND version = ?"
        return next((_sent(row) for row in self.blobs.rows(_SENT, where, [pairing, version])), None)

    def _set_sent(self, pairing: str, version: int) -> list[int]:
        """Mark `version` sent, in the caller's transaction; the versions whose whole sets
        went with it (`_prune_whole_sets`), to `_let_go` once the transaction is committed."""
        sql = "UPDATE sent_snapshots SET pending = 0 WHERE pairing = ? AND version = ?"
        self.db.execute(sql, [pairing, version])
        return self._prune_whole_sets(pairing, version)

    def _let_go(self, pairing: str, pruned: list[int]) -> None:
        """Forget the blobs held for versions whose whole sets were pruned."""
        for version in pruned:
            self.blobs.drop(_SENT, pairing, version)

    def record_cosigned(self, report_id: str, pairing: str, now: datetime) -> None:
        """Remember that this agent co-signed a report (the first time counts)."""
        sql = (
            "INSERT INTO cosigned_reports (report_id, pairing, signed_at) VALUES (?, ?, ?)"
            " ON CONFLICT (report_id) DO NOTHING"
        )
        with transaction(self.db, f"{self.path}: cannot record co-signed report {report_id}"):
            self.db.execute(sql, [report_id, pairing, rfc3339(now)])

    def peer_snapshot(self, pairing: str, version: int) -> Served | None:
        """The peer's snapshot `version` of `pairing` as kept by `keep_peer_snapshot`, with its
        whole set when a delta."""
        rows = self.blobs.rows(_PEER, "pairing = ? AND version = ?", [pairing, version])
        return _served(rows[0]) if rows else None

    def peer_base(self, pairing: str) -> Base | None:
        """The latest peer snapshot kept whose whole set is known here: what the peer's next
        delta may build on."""
        rows = self.blobs.rows(_PEER, _LATEST, [pairing])
        if not rows:
            return None
        served = _served(rows[0])
        # Kept once verified, so canonical: its header is read alone (delta.accepted_header).
        whole = served.full or (b"" if accepted_header(served.payload).delta else served.payload)
        return Base(rows[0]["payload_sha256"], whole) if whole else None

    def latest_peer_digest(self, pairing: str) -> str:
        """The payload SHA-256 (hex) of the latest peer snapshot kept, its blobs unread; ""
        when none is kept (or it was written without one)."""
        row = self.db.execute(
            "SELECT payload_sha256 FROM peer_snapshots INDEXED BY peer_snapshots_meta WHERE "
            + _LATEST,
            [pairing],
        ).fetchone()
        return str(row[0]) if row is not None and row[0] else ""

    def peer_base_digest(self, pairing: str) -> str:
        """`peer_base`'s payload SHA-256 (hex); "" when there is none. Its blobs are read once
        per cycle for both (agent.store.snapshot_blobs)."""
        base = self.peer_base(pairing)
        return base.payload_sha256 if base else ""

    def keep_peer_snapshot(
        self, pairing: str, version: int, env: Envelope, now: datetime, full: bytes = b""
    ) -> None:
        """Keep a peer snapshot just verified (with its whole set `full` if a delta, stored as
        agent.store.whole_chain decides), and only the two latest of the pairing with the rows
        the older one's set is rebuilt from (`_prune_peer`). One kept already as it is (read
        back from here to be verified again) is not written again."""
        signatures = _signatures_json([(s.keyid, s.sig) for s in env.signatures])
        digest = hashlib.sha256(env.payload).hexdigest()
        row = [pairing, version, env.payload_type, env.payload, signatures, rfc3339(now)]
        with transaction(self.db, f"{self.path}: cannot keep {pairing}'s peer snapshot"):
            if not self._kept_as(pairing, version, env.payload_type, digest, signatures, full):
                stored = placement(self.db, _PEER, pairing, env.payload, full)
                self.db.execute(_KEEP_PEER, [*row, *stored, digest])
                self.blobs.drop(_PEER, pairing, version)
            self._prune_peer(pairing)

    def _prune_peer(self, pairing: str) -> None:
        """Keep the pairing's two latest peer snapshots, and those the older one's whole set
        is rebuilt from (agent.store.whole_chain)."""
        rows = self.db.execute(
            "SELECT version FROM peer_snapshots WHERE pairing = ? ORDER BY version DESC LIMIT 2",
            [pairing],
        ).fetchall()
        if len(rows) < 2:
            return
        older = int(rows[1][0])
        root = chain_root(self.db, _PEER, pairing, older)
        below = older if root is None else min(root, older)
        sql = "DELETE FROM peer_snapshots WHERE pairing = ? AND version < ?"
        self.db.execute(sql, [pairing, below])

    def _kept_as(
        self, pairing: str, version: int, kind: str, digest: str, signatures: str, full: bytes
    ) -> bool:
        """Whether the peer snapshot `version` is kept with this payload, these signatures and
        a whole set (or needs none: `full` is empty)."""
        row = self.db.execute(
            "SELECT payload_type, payload_sha256, signatures, full IS NOT NULL OR chain > 0 FROM"
            " peer_snapshots WHERE pairing = ? AND version = ?",
            [pairing, version],
        ).fetchone()
        return (
            row is not None
            and tuple(row[:3]) == (kind, digest, signatures)
            and (bool(row[3]) or not full)
        )

    def record_rotation(self, rotation: Rotation, now: datetime) -> None:
        """Keep a peer's key rotation; the same one again is a no-op."""
        row = rotation_row(rotation, rfc3339(now))
        with transaction(
            self.db, f"{self.path}: cannot record the key rotation of {rotation.party}"
        ):
            self.db.execute(_INSERT_ROTATION, row)

    def record_server_rotation(
        self, pairing: str, state: TrustedState, rotation: ServerRotation, now: datetime
    ) -> None:
        """The server's key rotation, verified into `state`, in one transaction; the same one
        again is a no-op."""
        row = [
            rotation.index,
            rotation.new_key.spki_der,
            rotation.old_key.spki_der,
            _utc_text(rotation.announced_at),
            _utc_text(now),
        ]
        sql = (
            "INSERT INTO server_key_rotations (log_index, new_key, old_key, announced_at,"
            " recorded_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (log_index) DO NOTHING"
        )
        with transaction(self.db, f"{self.path}: cannot record the server's key rotation"):
            self.db.execute(sql, row)
            self._save_state(pairing, state, now)

    def record_own_keys(self, keys: Sequence[VerifyKey], now: datetime) -> None:
        """This party's signing keys as configured now; a key recorded before stays as it was."""
        sql = (
            "INSERT INTO own_signing_keys (keyid, spki, first_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (keyid) DO NOTHING"
        )
        rows = [(key.keyid, key.spki_der, _utc_text(now)) for key in keys]
        with transaction(self.db, f"{self.path}: cannot record this party's signing keys"):
            self.db.conn.executemany(sql, rows)

    def own_keys(self) -> list[VerifyKey]:
        """Every signing key this party was configured with, first seen first."""
        sql = "SELECT spki FROM own_signing_keys ORDER BY first_seen, keyid"
        return [
            verify_key_from_spki_der(bytes(row["spki"]), source="stored own key")
            for row in self._rows(sql)
        ]

    def server_rotations(self) -> list[ServerRotation]:
        """The exchange server's key rotations this agent followed, in log order."""
        sql = "SELECT * FROM server_key_rotations ORDER BY log_index"
        return [
            ServerRotation(
                int(row["log_index"]),
                verify_key_from_spki_der(bytes(row["new_key"]), source="stored server key"),
                verify_key_from_spki_der(bytes(row["old_key"]), source="stored server key"),
                parse_rfc3339(row["announced_at"]),
            )
            for row in self._rows(sql)
        ]

    def rotations(self, party: str) -> list[Rotation]:
        """The key rotations of peer `party` this agent accepted, in any pairing."""
        sql = "SELECT * FROM peer_key_rotations WHERE party = ? ORDER BY pairing, version"
        return [rotation_from_row(row) for row in self._rows(sql, [party])]

    def has_cosigned(self, report_id: str) -> bool:
        """Whether this agent already co-signed the report."""
        sql = "SELECT 1 FROM cosigned_reports WHERE report_id = ?"
        return self.db.execute(sql, [report_id]).fetchone() is not None

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        cursor = self.db.execute(sql, list(params))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]

    def _sources(self, shas: Sequence[str] | None = None) -> dict[str, tuple[SourceRef, ...]]:
        """Every source of these certificates (as many as SQLite binds at once), or of all."""
        where, params = "", list(shas or ())
        if shas is not None:
            where = f"WHERE cs.sha256 IN ({', '.join('?' * len(params))})"
        sql = f"{sightings.SOURCES_READ} {where} ORDER BY cs.sha256, cs.rowid"
        grouped: dict[str, list[SourceRef]] = {}
        # One SourceRef per distinct row: a collection's sources share a few (issue 13).
        shared: dict[tuple[str, str, str, str], SourceRef] = {}
        for sha, kind, location, first, last in self.db.execute(sql, params):
            key = (kind, location, first, last)
            ref = shared.get(key)
            if ref is None:
                ref = shared[key] = _source(*key)
            grouped.setdefault(sha, []).append(ref)
        # One tuple per distinct list of refs too: the sources kept from this read are then
        # updated once per distinct list (agent.store.kept_sources), not once per certificate.
        lists: dict[tuple[int, ...], tuple[SourceRef, ...]] = {}
        return {
            sha: lists.setdefault(tuple(map(id, refs)), tuple(refs))
            for sha, refs in grouped.items()
        }

    def _sources_of(self, shas: Sequence[str] | None) -> dict[str, tuple[SourceRef, ...]]:
        """`_sources` of these certificates alone, read in batches of SQLite's bound values;
        of every certificate (None)."""
        if shas is None:
            return self._sources()
        found: dict[str, tuple[SourceRef, ...]] = {}
        for start in range(0, len(shas), _BATCH):
            found.update(self._sources(shas[start : start + _BATCH]))
        return found

    def _record(self, row: dict[str, Any], sources: tuple[SourceRef, ...]) -> CertRecord:
        try:
            info = parse_certificate(row["der"])
        except ValueError as e:
            raise StoreError(f"{self.path}: certificate {row['sha256']} is corrupt: {e}") from e
        if info.sha256 != row["sha256"]:
            raise StoreError(f"{self.path}: certificate {row['sha256']} has other DER bytes")
        try:
            facts = facts_from_bytes(row["facts"] or b"", info.sha256)
        except ValueError as e:
            raise StoreError(f"{self.path}: {e}") from e
        return CertRecord(
            info, row["operator"], row["lifecycle"], _revocation(row), sources, **facts
        )

    def _check_same_payload(self, known: SentSnapshot, payload: bytes) -> None:
        if known.payload != payload:
            raise StoreError(
                f"{self.path}: snapshot {known.pairing} v{known.version} was already sent with"
                " other bytes; a version number is never reused"
            )


def rfc3339(at: datetime) -> str:
    """`at` as stored: RFC 3339 UTC. A naive time is a caller's bug that must not reach disk."""
    try:
        return _utc_text(at)
    except ValueError as e:
        raise StoreError(f"{e}; invsync stores only UTC times") from e


def _rows(
    records: Sequence[CertRecord], now: datetime
) -> tuple[list[dict[str, object]], list[sightings.Row]]:
    """The certificate rows and source rows of `records`. Built before anything is written, so a
    naive time or a bad record raises first, and a large inventory costs a few calls, not two
    per record."""
    return [_certificate_row(record) for record in records], _source_rows(records, now)


def _source_rows(records: Sequence[CertRecord], now: datetime) -> list[sightings.Row]:
    rfc3339(now)  # a naive time is refused before anything is written
    # Each source keeps its own last sighting: a record read back from the store and
    # stored again must not look freshly reported by every old source.
    return [
        (record.sha256, ref.kind, ref.location, rfc3339(ref.first_seen), rfc3339(ref.last_seen), 0)
        for record in records
        for ref in record.sources
    ]


_CONTENT = itemgetter(*_CERT_COLUMNS[:-1])  # every column but row_digest, as a tuple


def _row_digests(records: Sequence[CertRecord], kept: LastValues[str] | None) -> list[str]:
    def digest(record: CertRecord) -> str:
        return row_digest(_certificate_columns(record))

    return kept.of(records, digest) if kept is not None else [digest(r) for r in records]


def _certificate_row(record: CertRecord, digest: str | None = None) -> dict[str, object]:
    """The record's row; `digest`: its row digest, when already known (agent.model.last_values)."""
    row = _certificate_columns(record)
    row["row_digest"] = digest or row_digest(row)
    return row


def row_digest(row: dict[str, object]) -> str:
    """The SHA-256 of a certificate row's content: every column but row_digest."""
    # Values that are str, bytes, int or None: equal encodings are equal values, so an
    # unchanged digest means unchanged content. marshal's version 2 writes each value whole
    # (no back-references, which later versions and pickle write for an object met twice),
    # so the digest does not depend on which values happen to be one shared object.
    return hashlib.sha256(marshal.dumps(_CONTENT(row), 2)).hexdigest()


def _certificate_columns(record: CertRecord) -> dict[str, object]:
    info, revocation = record.info, record.revocation
    return {
        "sha256": info.sha256, "der": info.der, "subject": info.subject, "issuer": info.issuer,
        "serial_hex": info.serial_hex, "not_before": rfc3339(info.not_before),
        "not_after": rfc3339(info.not_after), "spki_sha256": info.spki_sha256,
        "doppelganger_key": info.doppelganger_key, "ski": info.ski, "aki": info.aki,
        "is_ca": int(info.is_ca), "operator": record.operator, "lifecycle": record.lifecycle,
        "revoked_at": rfc3339(revocation.revoked_at) if revocation else None,
        "revocation_reason": revocation.reason if revocation else None,
        "revocation_source": revocation.source if revocation else None,
        "present": 1, "attribution": record.attribution,
        "revocation_crl_hash": revocation.crl_signature_hash if revocation else None,
        "facts": facts_to_bytes(record),
    }  # fmt: skip


def _source(kind: str, location: str, first_seen: str, last_seen: str) -> SourceRef:
    return SourceRef(kind, location, parse_rfc3339(first_seen), parse_rfc3339(last_seen))


def _revocation(row: dict[str, Any]) -> Revocation | None:
    if row["revoked_at"] is None:
        return None
    at = parse_rfc3339(row["revoked_at"])
    return Revocation(
        at,
        row["revocation_reason"] or "",
        row["revocation_source"] or "",
        row["revocation_crl_hash"] or "",
    )


def _signatures_json(signatures: list[tuple[str, bytes]]) -> str:
    items = [{"keyid": keyid, "sig": base64.b64encode(sig).decode()} for keyid, sig in signatures]
    return json.dumps(items)


def _sent(row: dict[str, Any]) -> SentSnapshot:
    signatures = tuple(
        (s["keyid"], base64.b64decode(s["sig"])) for s in json.loads(row["signatures"])
    )
    return SentSnapshot(
        pairing=row["pairing"],
        version=row["version"],
        payload=row["payload"],
        payload_sha256=row["payload_sha256"],
        payload_type=row["payload_type"],
        signatures=signatures,
        issued_at=parse_rfc3339(row["issued_at"]),
        expires_at=parse_rfc3339(row["expires_at"]),
        full=None if row["full"] is None else bytes(row["full"]),
    )


def _sent_row(sent: SentSnapshot, full: bytes | None, chain: int | None) -> dict[str, object]:
    """A snapshot already sent and receipted, as its row (not pending), its whole set stored
    as `whole_chain.placement` decided."""
    return {
        "pairing": sent.pairing,
        "version": sent.version,
        "payload": sent.payload,
        "payload_sha256": hashlib.sha256(sent.payload).hexdigest(),
        "payload_type": sent.payload_type,
        "signatures": _signatures_json(list(sent.signatures)),
        "issued_at": rfc3339(sent.issued_at),
        "expires_at": rfc3339(sent.expires_at),
        "pending": 0,
        "full": full,
        "chain": chain,
    }


def _state_row(pairing: str, state: TrustedState, now: datetime) -> dict[str, object]:
    own, peer, checkpoint = state.own, state.peer, state.checkpoint
    return {
        "pairing": pairing,
        "own_version": own.version if own else None,
        "own_digest": own.digest if own else None,
        "peer_version": peer.version if peer else None,
        "peer_digest": peer.digest if peer else None,
        "checkpoint_size": checkpoint.size if checkpoint else None,
        "checkpoint_root": checkpoint.root_hash if checkpoint else None,
        "checkpoint_note": checkpoint.note if checkpoint else None,
        "updated_at": rfc3339(now),
    }


def _state(row: dict[str, Any], receipts: dict[int, Envelope]) -> TrustedState:
    own = _verified(row["own_version"], row["own_digest"])
    peer = _verified(row["peer_version"], row["peer_digest"])
    return TrustedState(own, peer, receipts, _checkpoint(row))


def _checkpoint(row: dict[str, Any]) -> LogCheckpoint | None:
    if row["checkpoint_size"] is None:
        return None
    size, root, note = row["checkpoint_size"], row["checkpoint_root"], row["checkpoint_note"]
    return LogCheckpoint(int(size), bytes(root), bytes(note))


def _verified(version: int | None, digest: str | None) -> Verified | None:
    return None if version is None or digest is None else Verified(int(version), digest)


def _served(row: dict[str, Any]) -> Served:
    env = _envelope(row)
    full = b"" if row["full"] is None else bytes(row["full"])
    return Served(env.payload_type, env.payload, env.signatures, full=full)


def _envelope(row: dict[str, Any]) -> Envelope:
    sigs = tuple(Sig(s["keyid"], base64.b64decode(s["sig"])) for s in json.loads(row["signatures"]))
    return Envelope(row["payload_type"], bytes(row["payload"]), sigs)


def _refusal(row: dict[str, Any]) -> Refusal:
    finding = Finding.from_json(json.loads(row["finding"]), f"refused_inputs of {row['pairing']}")
    return Refusal(row["rule"], finding, parse_rfc3339(row["refused_at"]))
