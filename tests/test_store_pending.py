"""Pending snapshots: kept before the push, sent only once the receipt arrived."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.errors import StoreError
from invsync.agent.store.agent_store import MIGRATIONS, AgentStore
from invsync.agent.store.db import open_database

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _record(store: AgentStore, version: int, payload: bytes, *, pending: bool) -> None:
    store.record_sent_snapshot(
        "p", version, payload, "t", [("k", b"s")], NOW, NOW + timedelta(days=1), pending=pending
    )


def test_a_pending_snapshot_is_not_sent_until_marked(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "a.db") as store:
        _record(store, 1, b"one", pending=False)
        _record(store, 2, b"two", pending=True)
        latest = store.latest_sent_snapshot("p")
        assert latest is not None and latest.version == 1
        assert store.sent_snapshot("p", 2) is None
        pending = store.pending_snapshot("p")
        assert pending is not None and (pending.version, pending.payload) == (2, b"two")
        assert pending.signatures == (("k", b"s"),)
        store.mark_sent("p", 2)
        assert store.pending_snapshot("p") is None
        latest = store.latest_sent_snapshot("p")
        assert latest is not None and latest.version == 2


def test_a_dropped_pending_frees_its_version_and_never_drops_a_sent_one(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "a.db") as store:
        _record(store, 1, b"one", pending=False)
        store.drop_pending("p", 1)
        assert store.sent_snapshot("p", 1) is not None
        _record(store, 2, b"two", pending=True)
        store.drop_pending("p", 2)
        assert store.pending_snapshot("p") is None
        _record(store, 2, b"other", pending=True)
        with pytest.raises(StoreError, match="never reused"):
            _record(store, 2, b"third", pending=False)


def test_recording_the_same_bytes_as_sent_confirms_a_pending_snapshot(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "a.db") as store:
        _record(store, 1, b"one", pending=True)
        _record(store, 1, b"one", pending=False)
        assert store.pending_snapshot("p") is None
        assert store.sent_snapshot("p", 1) is not None


def test_the_migration_keeps_snapshots_sent_before_it_as_sent(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    open_database(path, MIGRATIONS[:2]).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO sent_snapshots VALUES ('p', 1, x'00', 'h', 't', '[]', ?, ?)",
            ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"],
        )
    db.close()
    with AgentStore(path) as store:
        sent = store.latest_sent_snapshot("p")
        assert sent is not None and sent.version == 1
        assert store.pending_snapshot("p") is None
