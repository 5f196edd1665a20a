"""Whole sets stored once every WHOLE_EVERY versions and rebuilt from the chain of deltas
between (agent.store.whole_chain, issue 13), on real certificates: every whole set a reader
may ask for comes back byte for byte, the database holds few, and a damaged chain is said."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import StoreError
from invsync.agent.exchange import delta
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.snapshot import BuildMemo, Built, decode_payload
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.store.agent_store import MIGRATIONS, AgentStore
from invsync.agent.store.db import open_database
from invsync.agent.store.snapshot_blobs import META_COLUMNS
from invsync.agent.store.whole_chain import WHOLE_EVERY
from tests.exchange_rig import PAIRING
from tests.test_delta import snapshot

T0 = datetime(2026, 12, 6, tzinfo=UTC)
VERSIONS = 3 * WHOLE_EVERY + 3


def _chain(records: list[CertRecord], versions: int = VERSIONS) -> list[Built]:
    """jprs's versions 1..`versions`: a full one, then deltas, each dropping one record and
    revoking another, so that each delta changes, removes and adds back records."""
    built: list[Built] = []
    for version in range(1, versions + 1):
        revoked = Revocation(T0 - timedelta(days=version), "superseded", "issuance-log:s.jsonl")
        listed = [r for i, r in enumerate(records) if i != version % len(records)]
        target = (version + 3) % len(listed)
        listed[target] = listed[target].with_view(revocation=revoked)
        built.append(snapshot(listed, version, built[-1] if built else None))
    return built


def _env(built: Built) -> Envelope:
    return Envelope("t", built.payload, (Sig("ab" * 32, b"s"),))


def _send(store: AgentStore, built: Built, version: int, pairing: str = "p") -> None:
    full = built.full if built.delta else None
    store.record_sent_snapshot(pairing, version, built.payload, "t", [], T0, T0, full=full)


@contextmanager
def _sent_chain(
    tmp_path: Path, records: list[CertRecord], versions: int
) -> Iterator[tuple[AgentStore, list[Built]]]:
    """A store that sent `_chain(records, versions)`, nothing of it held in memory."""
    built = _chain(records, versions)
    with AgentStore(tmp_path / "agent.db") as store:
        for version, one in enumerate(built, start=1):
            _send(store, one, version)
        store.forget_blobs()
        yield store, built


def _cycles(path: Path, built: list[Built]) -> Iterator[tuple[AgentStore, int, Built]]:
    """Each version with a store of its own: a process per cycle, nothing held from the last."""
    for version, one in enumerate(built, start=1):
        with AgentStore(path) as store:
            yield store, version, one


def _stored(store: AgentStore, table: str) -> list[int]:
    sql = f"SELECT version FROM {table} WHERE full IS NOT NULL ORDER BY version"
    return [int(v) for (v,) in store.db.execute(sql).fetchall()]


def test_sent_whole_sets_come_back_rebuilt_and_few_are_stored(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    built, path = _chain(records), tmp_path / "agent.db"
    for store, version, one in _cycles(path, built):
        _send(store, one, version)
        # What the next draft builds on and the report check compares, read anew.
        store.forget_blobs()
        for wanted in (version, version - 1):
            sent = store.sent_snapshot("p", wanted)
            assert wanted < 1 or (sent is not None and sent.whole == built[wanted - 1].full)
        stored = _stored(store, "sent_snapshots")
        assert len(stored) <= 2, stored  # the chain's start, and one stored since
    assert stored == [3 * WHOLE_EVERY + 1]  # each (k * WHOLE_EVERY + 1)th is stored
    chains = store_chains(path, "sent_snapshots")
    assert chains[VERSIONS] == VERSIONS - (3 * WHOLE_EVERY + 1)
    assert chains[1] == 0  # a full snapshot holds its set in its payload
    assert chains[WHOLE_EVERY] is None  # pruned: no reader asks for it


def store_chains(path: Path, table: str) -> dict[int, int | None]:
    with AgentStore(path, create=False) as store:
        rows = store.db.execute(f"SELECT version, chain FROM {table}").fetchall()
    return {int(v): c for v, c in rows}


def test_peer_whole_sets_come_back_rebuilt_and_the_chain_is_kept(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    built, path = _chain(records), tmp_path / "agent.db"
    for store, version, one in _cycles(path, built):
        store.keep_peer_snapshot("p", version, _env(one), T0, one.full if one.delta else b"")
        store.forget_blobs()
        for wanted in (version, version - 1):
            kept = store.peer_snapshot("p", wanted)
            if wanted >= 1:
                assert kept is not None
                decoded = decode_payload(kept.payload, full=kept.full)
                assert decoded.full == built[wanted - 1].full
        base = store.peer_base("p")
        assert base is not None and base.full == one.full
        assert len(_stored(store, "peer_snapshots")) <= 1 + version // WHOLE_EVERY
    versions = sorted(store_chains(path, "peer_snapshots"))
    # The two latest, back to the stored set the older one is rebuilt from.
    assert versions == list(range(3 * WHOLE_EVERY + 1, VERSIONS + 1))


def test_a_process_s_own_copy_is_used_instead_of_a_rebuild(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    with _sent_chain(tmp_path, records, 3) as (store, built):
        asked: list[str] = []

        def held(digest: str) -> bytes | None:
            asked.append(digest)
            return built[2].full if digest == hashlib.sha256(built[2].payload).hexdigest() else None

        store.blobs.held_whole = held
        store.db.execute("UPDATE sent_snapshots SET payload = x'00' WHERE version = 2")
        latest = store.latest_sent_snapshot("p")  # its chain is damaged, but not read
        assert latest is not None and latest.whole == built[2].full
        assert asked == [hashlib.sha256(built[2].payload).hexdigest()]


def test_a_damaged_chain_is_named_and_a_missing_link_is_not_known(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    with _sent_chain(tmp_path, records, 4) as (store, built):
        digest = hashlib.sha256(built[2].payload).hexdigest()
        store.db.execute("UPDATE sent_snapshots SET payload = x'0a0100' WHERE version = 3")
        with pytest.raises(StoreError) as caught:
            store.sent_snapshot("p", 4)
        assert str(caught.value) == (
            "sent_snapshots of 'p': the kept snapshots do not rebuild a whole set (the payload "
            f"kept as {digest[:16]} has other bytes): the database is damaged; restore it from "
            "a backup"
        )
        store.db.execute("DELETE FROM sent_snapshots WHERE version = 3")
        sent = store.sent_snapshot("p", 4)
        assert sent is not None and sent.whole is None  # as a delta restored from the log


def test_rows_written_before_chains_keep_their_whole_sets(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    built = _chain(records, 2)
    path = tmp_path / "agent.db"
    before = MIGRATIONS[: [m.__name__ for m in MIGRATIONS].index("m013_whole_set_chains")]
    db = open_database(path, before)
    db.execute(
        "INSERT INTO sent_snapshots (pairing, version, payload, payload_sha256, payload_type,"
        " signatures, issued_at, expires_at, pending, full) VALUES ('p', 2, ?, ?, 't', '[]',"
        " '2026-12-06T00:00:00Z', '2026-12-06T00:00:00Z', 0, ?)",
        [built[1].payload, hashlib.sha256(built[1].payload).hexdigest(), built[1].full],
    )
    db.conn.commit()
    db.conn.close()
    with AgentStore(path) as store:
        sent = store.sent_snapshot("p", 2)
        assert sent is not None and sent.whole == built[1].full
        next_one = _chain(records, 3)[2]
        _send(store, next_one, 3)
        (chain,) = store.db.execute("SELECT chain FROM sent_snapshots WHERE version = 3").fetchone()
        assert chain == 1  # chained on the row written before
        store.forget_blobs()
        again = store.sent_snapshot("p", 3)
        assert again is not None and again.whole == next_one.full


def test_a_chain_applies_like_its_deltas_one_by_one(records: list[CertRecord]) -> None:
    built = _chain(records, 6)
    parts = [delta.read_parts(one.payload) for one in built[1:]]
    one_by_one = built[0].full
    for step in parts:
        one_by_one = delta.rebuild(step, one_by_one)
    assert delta.rebuild_chain(built[0].full, parts) == one_by_one == built[-1].full
    assert delta.rebuild_chain(built[0].full, []) == built[0].full


@pytest.mark.parametrize("daemon", [True, False])
def test_a_daemon_reads_the_sets_it_holds_and_a_one_shot_process_rebuilds(
    fed: Path, records: list[CertRecord], daemon: bool
) -> None:
    """A daemon's store takes its own last builds from the build memo and the peer's adopted
    sets from the recent snapshots (so a steady cycle rebuilds nothing); a one-shot process
    holds neither and rebuilds from the database, here from a chain damaged on purpose."""
    agent = Agent(load_agent_config(fed / "jprs.toml"), keeps=daemon)
    try:
        built: list[Built] = []
        for version, listed in enumerate((records, records[1:], records[2:]), start=1):
            encodings = agent.encodings
            memo = None if encodings is None else encodings.setdefault(PAIRING, BuildMemo())
            base = built[-1] if built else None
            built.append(snapshot(listed, version, base, memo=memo))
            _send(agent.store, built[-1], version, PAIRING)
        peer = _chain(records, 3)
        for version, one in enumerate(peer, start=1):
            decoded = decode_payload(one.payload, full=one.full if one.delta else b"")
            if one.delta:  # as a report check's rebuild on a held base gives it
                agent.recent.hold_whole(decoded.payload_sha256, delta.read_whole(one.full))
                agent.recent.adopt_whole(decoded)
            agent.store.keep_peer_snapshot(PAIRING, version, _env(one), T0, one.full)
        agent.store.forget_blobs()
        for table in ("sent_snapshots", "peer_snapshots"):
            agent.store.db.execute(f"UPDATE {table} SET payload = x'0a0100' WHERE version = 2")
        if not daemon:
            with pytest.raises(StoreError, match="the database is damaged"):
                agent.store.sent_snapshot(PAIRING, 3)
            return
        sent = agent.store.sent_snapshot(PAIRING, 3)
        kept = agent.store.peer_snapshot(PAIRING, 3)
        assert sent is not None and sent.whole == built[2].full
        assert kept is not None and kept.full == peer[2].full
    finally:
        agent.close()


@pytest.mark.parametrize("table", ["sent_snapshots", "peer_snapshots"])
def test_a_chain_and_a_rows_columns_are_read_from_indexes_not_past_blobs(
    tmp_path: Path, table: str
) -> None:
    """In a row, the digest, the chain and most other columns lie past the payload and whole
    set: read from the row, each is read past 60 MB of overflow pages at 100,000."""
    columns = META_COLUMNS[table]
    lookups = [
        f"SELECT version, chain FROM {table} WHERE pairing = ? AND payload_sha256 = ?",
        f"SELECT {columns} FROM {table} INDEXED BY {table}_meta WHERE pairing = ? AND version = ?",
        f"SELECT {columns} FROM {table} INDEXED BY {table}_meta WHERE pairing = ?"
        " ORDER BY version DESC LIMIT 1",
    ]
    with AgentStore(tmp_path / "agent.db") as store:
        for lookup in lookups:
            plan = store.db.execute(f"EXPLAIN QUERY PLAN {lookup}", ["p", 1][: lookup.count("?")])
            assert "USING COVERING INDEX" in " ".join(str(row[-1]) for row in plan.fetchall())


def test_a_stored_set_that_does_not_add_up_to_the_header_is_refused(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    """The stored set a chain starts from, edited into another well-formed set: the rebuilt
    one misses the signed records_root, and is refused rather than built on."""
    with _sent_chain(tmp_path, records, WHOLE_EVERY + 3) as (store, built):
        (full,) = store.db.execute(
            "SELECT full FROM sent_snapshots WHERE chain = 0 AND full IS NOT NULL"
        ).fetchone()
        parts = delta.read_parts(bytes(full))
        later = {r for one in built[-2:] for r in delta.read_parts(one.payload).records}
        kept = next(i for i, r in enumerate(parts.records) if r not in later)  # not put back
        fewer = delta.full_form(
            parts.header_bytes, [*parts.records[:kept], *parts.records[kept + 1 :]]
        )
        store.db.execute("UPDATE sent_snapshots SET full = ? WHERE full IS NOT NULL", [fewer])
        with pytest.raises(StoreError, match=r"records_root [0-9a-f]{64} is not the header's"):
            store.latest_sent_snapshot("p")


def test_a_database_whose_chains_were_made_without_the_digest_index_migrates(
    tmp_path: Path,
) -> None:
    """m013 made `_by_digest` from bb1f5bb on; a database its earlier form migrated has none,
    and m015, which makes it again with the version and chain, must still apply."""
    path = tmp_path / "agent.db"
    AgentStore(path).close()
    with sqlite3.connect(path) as conn:
        for table in ("sent_snapshots", "peer_snapshots"):
            conn.execute(f"DROP INDEX {table}_meta")
            conn.execute(f"DROP INDEX {table}_by_digest")
        conn.execute("DELETE FROM _migrations WHERE name = 'm015_snapshot_columns_indexed'")
    with AgentStore(path, create=False) as store:
        indexes = {
            name
            for (name,) in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert {"sent_snapshots_by_digest", "peer_snapshots_meta"} <= indexes
