"""ServerStore: migrations, exact bytes, versions, reports and signatures, threads, atomicity,
and the transparency log's tables."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from invsync.agent.exchange import tlog
from invsync.agent.exchange.acceptance import LastAccepted
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import generate
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server.storage import ExchangeStorage
from invsync.server.store import ServerStore

PAIRING = "secom-jprs"
# Bytes no text round trip survives: NUL, invalid UTF-8, a lone CR, high bytes.
AWKWARD = b"\x00\xff\xfe\r\x80payload\x00" + bytes(range(256))


def env(payload: bytes, *keyids: str) -> Envelope:
    sigs = tuple(Sig(k, hashlib.sha256(k.encode() + payload).digest() + b"\x00") for k in keyids)
    return Envelope(SNAPSHOT_PAYLOAD_TYPE, payload, sigs)


def sig(keyid: str) -> Sig:
    return Sig(keyid, b"sig-by-" + keyid.encode() + b"\x00\xff")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "server.db"


@pytest.fixture
def store(path: Path) -> Iterator[ServerStore]:
    opened = ServerStore(path)
    yield opened
    opened.close()


def count(store: ServerStore, table: str) -> int:
    return store.db.table(table).count


def test_migrations_are_recorded_once(path: Path) -> None:
    ServerStore(path).close()
    again = ServerStore(path)
    names = [row["name"] for row in again.db.table("_migrations").rows]
    assert names == [
        "_m001_initial",
        "_m002_key_rotations",
        "_m003_transparency_log",
        "_m004_superseded",
        "_m005_snapshot_sets",
    ]
    tables = {
        "snapshot_sets",
        "snapshots",
        "reports",
        "report_signatures",
        "key_rotations",
        "log_entries",
        "checkpoints",
    }
    assert set(again.db.table_names()) >= tables
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    again.close()


def test_snapshot_payload_signatures_and_receipt_round_trip_exactly(store: ServerStore) -> None:
    sent = env(AWKWARD, "a" * 64, "b" * 64)
    receipt = b"\x00receipt\xff" + AWKWARD
    store.commit_snapshot("jprs", PAIRING, 1, sent, receipt)
    got = store.snapshot("jprs", PAIRING, 1)
    assert got == sent
    assert got is not None and type(got.payload) is bytes
    assert store.receipt("jprs", PAIRING, 1) == receipt
    digest = hashlib.sha256(AWKWARD).hexdigest()
    assert store.last_accepted("jprs", PAIRING) == LastAccepted(1, digest)


def test_latest_versus_a_given_version(store: ServerStore) -> None:
    for version in (2, 3, 1):  # committed out of order: "latest" is the highest version
        store.commit_snapshot("jprs", PAIRING, version, env(b"v%d" % version, "k"), b"r")
    store.commit_snapshot("secom", PAIRING, 7, env(b"secom", "k"), b"r")
    latest = store.snapshot("jprs", PAIRING)
    assert latest is not None and latest.payload == b"v3"
    second = store.snapshot("jprs", PAIRING, 2)
    assert second is not None and second.payload == b"v2"
    assert store.snapshot("jprs", PAIRING, 4) is None
    assert store.snapshot("jprs", "secom-acme") is None
    assert store.snapshot("acme", PAIRING) is None
    assert store.receipt("jprs", PAIRING, 4) is None
    assert store.last_accepted("jprs", PAIRING) == LastAccepted(
        3, hashlib.sha256(b"v3").hexdigest()
    )
    assert store.last_accepted("acme", PAIRING) is None


def test_a_version_is_stored_once(store: ServerStore) -> None:
    store.commit_snapshot("jprs", PAIRING, 1, env(b"first", "k"), b"r1")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        store.commit_snapshot("jprs", PAIRING, 1, env(b"second", "k"), b"r2")
    kept = store.snapshot("jprs", PAIRING, 1)
    assert kept is not None and kept.payload == b"first"
    assert store.receipt("jprs", PAIRING, 1) == b"r1"


def test_report_keeps_its_signatures_in_the_order_they_came(store: ServerStore) -> None:
    body = b'{"report":1}'
    store.save_report("r1", PAIRING, body, sig("server"))
    store.add_report_signature("r1", sig("jprs"))
    store.add_report_signature("r1", sig("secom"))
    stored = store.report(PAIRING, "r1")
    assert stored is not None
    assert (stored.report_id, stored.pairing) == ("r1", PAIRING)
    assert stored.envelope == Envelope(
        REPORT_PAYLOAD_TYPE, body, (sig("server"), sig("jprs"), sig("secom"))
    )
    assert stored.created_at.tzinfo is not None


def test_latest_report_and_a_given_report(store: ServerStore) -> None:
    store.save_report("r1", PAIRING, b"one", sig("server"))
    store.save_report("r2", PAIRING, b"two", sig("server"))
    store.save_report("x1", "secom-acme", b"other", sig("server"))
    latest = store.report(PAIRING)
    assert latest is not None and latest.report_id == "r2"
    first = store.report(PAIRING, "r1")
    assert first is not None and first.envelope.payload == b"one"
    assert store.report(PAIRING, "x1") is None  # another pairing's report is not this one's
    assert store.report("nobody") is None


def test_save_report_is_idempotent(store: ServerStore) -> None:
    store.save_report("r1", PAIRING, b"body", sig("server"))
    store.add_report_signature("r1", sig("jprs"))
    store.save_report("r1", PAIRING, b"body", Sig("server", b"another signature"))
    assert count(store, "reports") == 1
    stored = store.report(PAIRING, "r1")
    assert stored is not None
    assert stored.envelope.signatures == (sig("server"), sig("jprs"))


def test_a_signature_for_no_report_is_refused(store: ServerStore) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        store.add_report_signature("missing", sig("jprs"))
    assert count(store, "report_signatures") == 0


def test_usable_from_many_threads_at_once(store: ServerStore) -> None:
    threads, rounds = 8, 15
    start = threading.Barrier(threads)

    def work(n: int) -> int:
        start.wait(timeout=10)
        party = f"party{n}"
        for version in range(1, rounds + 1):
            payload = f"{party} v{version}".encode()
            store.commit_snapshot(party, PAIRING, version, env(payload, "k"), b"r")
            last = store.last_accepted(party, PAIRING)
            assert last == LastAccepted(version, hashlib.sha256(payload).hexdigest())
            got = store.snapshot(party, PAIRING)
            assert got is not None and got.payload == payload
            rid = f"{party}-{version}"
            store.save_report(rid, PAIRING, payload, sig("server"))
            store.add_report_signature(rid, sig(party))
            assert store.report(PAIRING) is not None
        return n

    with ThreadPoolExecutor(threads) as pool:
        done = [f.result(timeout=60) for f in [pool.submit(work, n) for n in range(threads)]]
    assert done == list(range(threads))
    assert count(store, "snapshots") == threads * rounds
    assert count(store, "reports") == threads * rounds
    assert count(store, "report_signatures") == 2 * threads * rounds


def _crash_after_insert(monkeypatch: pytest.MonkeyPatch, table: str, nth: int = 1) -> None:
    """Make the `nth` insert into `table` write its row, then die before the commit."""
    real = sqlite_utils.db.Table.insert
    seen = [0]

    def insert(self: sqlite_utils.db.Table, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        if self.name == table:
            seen[0] += 1
            if seen[0] == nth:
                raise KeyboardInterrupt("killed mid-transaction")
        return result

    monkeypatch.setattr(sqlite_utils.db.Table, "insert", insert)


def test_a_crash_inside_commit_snapshot_leaves_nothing(
    store: ServerStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after_insert(monkeypatch, "snapshots")
    with pytest.raises(KeyboardInterrupt, match="killed mid-transaction"):
        store.commit_snapshot("jprs", PAIRING, 1, env(b"v1", "k"), b"receipt")
    monkeypatch.undo()
    assert store.snapshot("jprs", PAIRING) is None
    assert store.receipt("jprs", PAIRING, 1) is None
    assert not store.db.conn.in_transaction
    # Another connection (another process, after a restart) sees nothing either...
    with sqlite3.connect(path) as other:
        assert other.execute("select count(*) from snapshots").fetchone()[0] == 0
    # ...and the store still works: the same version can now be committed.
    store.commit_snapshot("jprs", PAIRING, 1, env(b"v1", "k"), b"receipt")
    assert store.receipt("jprs", PAIRING, 1) == b"receipt"


def test_a_crash_between_a_report_and_its_server_signature_leaves_nothing(
    store: ServerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _crash_after_insert(monkeypatch, "report_signatures")
    with pytest.raises(KeyboardInterrupt, match="killed mid-transaction"):
        store.save_report("r1", PAIRING, b"body", sig("server"))
    monkeypatch.undo()
    assert store.report(PAIRING) is None
    assert (count(store, "reports"), count(store, "report_signatures")) == (0, 0)
    store.save_report("r1", PAIRING, b"body", sig("server"))
    stored = store.report(PAIRING)
    assert stored is not None and stored.envelope.signatures == (sig("server"),)


OLD_KEY, NEW_KEY = generate(), generate()


def test_a_rotation_is_kept_with_its_snapshot_across_a_restart(path: Path) -> None:
    rotation = Rotation("jprs", PAIRING, 2, NEW_KEY.public, (OLD_KEY.public,))
    store = ServerStore(path)
    store.commit_snapshot("jprs", PAIRING, 1, env(b"v1", "k"), b"r1")
    store.commit_snapshot("jprs", PAIRING, 2, env(b"v2", "k", "k2"), b"r2", rotation)
    store.close()
    again = ServerStore(path)
    assert again.rotations("jprs") == [rotation]
    assert again.rotations("secom") == []
    again.close()


def test_a_crash_after_the_snapshot_row_keeps_no_rotation_and_no_snapshot(
    store: ServerStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotation = Rotation("jprs", PAIRING, 1, NEW_KEY.public, (OLD_KEY.public,))
    _crash_after_insert(monkeypatch, "key_rotations")
    with pytest.raises(KeyboardInterrupt, match="killed mid-transaction"):
        store.commit_snapshot("jprs", PAIRING, 1, env(b"v1", "k"), b"receipt", rotation)
    monkeypatch.undo()
    assert store.snapshot("jprs", PAIRING) is None
    assert store.rotations("jprs") == []


def test_save_report_and_add_signature_say_whether_they_stored_anything(
    store: ServerStore,
) -> None:
    assert store.save_report("r1", PAIRING, b"body", sig("server")) is True
    assert store.save_report("r1", PAIRING, b"body", sig("server")) is False
    assert store.add_report_signature("r1", sig("jprs")) is True
    assert store.add_report_signature("r1", sig("jprs")) is False  # the same bytes: a retry
    other = Sig("jprs", b"another signature by the same key")
    assert store.add_report_signature("r1", other) is True
    stored = store.report(PAIRING, "r1")
    assert stored is not None and stored.envelope.signatures == (sig("server"), other)


def test_the_store_is_an_exchange_storage(store: ServerStore) -> None:
    storage: ExchangeStorage = store  # mypy checks the structure; this checks it is usable
    assert storage.log_size() == 0
    assert storage.checkpoint() is None


def test_log_entries_get_consecutive_indexes_and_keep_their_exact_bytes(
    store: ServerStore,
) -> None:
    leaves = [AWKWARD, b"", b"\x00", AWKWARD + b"2"]
    assert [store.append_log_entry(leaf) for leaf in leaves] == [0, 1, 2, 3]
    assert store.log_size() == 4
    assert store.log_entries(0, 4, 1 << 20) == leaves
    assert store.log_entries(1, 3, 1 << 20) == leaves[1:3]
    assert store.log_entries(4, 9, 1 << 20) == []
    assert store.leaf_hashes(4) == [tlog.leaf_hash(leaf) for leaf in leaves]
    assert store.leaf_hashes(2) == [tlog.leaf_hash(leaf) for leaf in leaves[:2]]
    assert all(type(leaf) is bytes for leaf in store.log_entries(0, 4, 1 << 20))


def test_a_range_stops_at_the_byte_budget_but_answers_at_least_one_entry(
    store: ServerStore,
) -> None:
    for n in range(4):
        store.append_log_entry(bytes([n]) * 100)
    assert [len(leaf) for leaf in store.log_entries(0, 4, 250)] == [100, 100]
    assert store.log_entries(2, 4, 10) == [b"\x02" * 100]


def test_checkpoints_latest_and_by_size(store: ServerStore) -> None:
    store.save_checkpoint(1, b"one\n")
    store.save_checkpoint(2, b"two\n")
    assert store.checkpoint() == b"two\n"
    assert store.checkpoint(1) == b"one\n"
    assert store.checkpoint(3) is None
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        store.save_checkpoint(2, b"another two\n")


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE log_entries SET leaf = x'00'", "log_entries is append-only"),
        ("DELETE FROM log_entries", "log_entries is append-only"),
        ("UPDATE checkpoints SET note = x'00'", "checkpoints is append-only"),
        ("DELETE FROM checkpoints", "checkpoints is append-only"),
    ],
)
def test_the_log_tables_refuse_updates_and_deletes(
    store: ServerStore, path: Path, statement: str, message: str
) -> None:
    store.append_log_entry(b"entry")
    store.save_checkpoint(1, b"note")
    with sqlite3.connect(path) as other, pytest.raises(sqlite3.IntegrityError, match=message):
        other.execute(statement)
    assert store.log_entries(0, 1, 100) == [b"entry"]
    assert store.checkpoint() == b"note"


def test_a_failure_inside_a_transaction_keeps_no_entry_no_checkpoint_and_no_snapshot(
    store: ServerStore,
) -> None:
    with pytest.raises(KeyboardInterrupt, match="killed mid-transaction"), store.transaction():
        store.append_log_entry(b"snapshot entry")
        store.save_checkpoint(1, b"note")
        store.commit_snapshot("jprs", PAIRING, 1, env(b"v1", "k"), b"receipt")
        raise KeyboardInterrupt("killed mid-transaction")
    assert (store.log_size(), store.checkpoint(), store.snapshot("jprs", PAIRING)) == (
        0,
        None,
        None,
    )
    assert not store.db.conn.in_transaction
    assert store.append_log_entry(b"next") == 0  # the index was not used up


def test_another_thread_waits_for_a_transaction_to_finish(store: ServerStore) -> None:
    inside, appended = threading.Event(), []

    def other() -> None:
        inside.wait(timeout=10)
        appended.append(store.append_log_entry(b"from another thread"))

    thread = threading.Thread(target=other)
    thread.start()
    with store.transaction():
        store.append_log_entry(b"first")
        inside.set()
        thread.join(timeout=0.2)  # blocked on the store's lock, not interleaved
        assert appended == [] and store.log_size() == 1
    thread.join(timeout=10)
    assert appended == [1]
    assert store.log_entries(0, 2, 1000) == [b"first", b"from another thread"]


def test_a_chain_reset_moves_the_versions_above_it_and_their_rotations_aside(
    store: ServerStore,
) -> None:
    key, old = generate(), generate()
    for version in (1, 2, 3):
        rotation = Rotation("jprs", PAIRING, 3, key.public, (old.public,)) if version == 3 else None
        store.commit_snapshot("jprs", PAIRING, version, env(b"v%d" % version, "k"), b"r", rotation)
    store.commit_snapshot("secom", PAIRING, 3, env(b"secom", "k"), b"r")
    assert store.supersede("jprs", PAIRING, 1, log_index=9) == [2, 3]
    assert store.last_accepted("jprs", PAIRING) == LastAccepted(
        1, hashlib.sha256(b"v1").hexdigest()
    )
    assert store.rotations("jprs") == []
    assert store.snapshot("secom", PAIRING) is not None  # another party's chain is untouched
    moved = store.db.execute(
        "SELECT version, payload, reset_log_index FROM superseded_snapshots ORDER BY version"
    ).fetchall()
    assert moved == [(2, b"v2", 9), (3, b"v3", 9)]
    with pytest.raises(sqlite3.IntegrityError, match="superseded_snapshots is append-only"):
        store.db.execute("DELETE FROM superseded_snapshots")


@pytest.mark.parametrize("table", ["snapshots", "key_rotations"])
def test_the_superseded_tables_keep_every_column_of_theirs(store: ServerStore, table: str) -> None:
    """A migration that adds a column to a table must add it to what a reset moves."""
    columns = [c.name for c in store.db.table(table).columns]
    kept = [c.name for c in store.db.table(f"superseded_{table}").columns]
    assert kept == [*columns, "reset_log_index"]


def test_small_log_entries_are_read_without_the_large_ones(store: ServerStore) -> None:
    """What the server reads at start for its key announcements: the entries of at most the
    bound, in log order, and none of the snapshots larger than it."""
    leaves = [b"s" * 10, b"L" * 70_000, b"t" * 16, b"L" * 16_385, b"u" * 16_384]
    for leaf in leaves:
        store.append_log_entry(leaf)
    assert store.small_log_entries(16_384) == [(0, leaves[0]), (2, leaves[2]), (4, leaves[4])]
