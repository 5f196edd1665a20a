"""The snapshot tables' blobs, read once per cycle under their payload's digest (issue 13)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.snapshot import build_payload
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.agent.store.agent_store import MIGRATIONS, AgentStore
from invsync.agent.store.db import open_database
from tests.test_delta import snapshot

T0 = datetime(2026, 12, 6, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def _payload(version: int) -> bytes:
    return build_payload(
        party="jprs",
        pairing="p",
        role=SUBORDINATE,
        version=version,
        issued_at=T0,
        expires_at=T1,
        records=[],
    )


def _env(payload: bytes, sig: bytes = b"s") -> Envelope:
    return Envelope("t", payload, (Sig("ab" * 32, sig),))


def test_a_sent_snapshot_is_read_from_the_database_once_until_forgotten(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_sent_snapshot("p", 1, b"one", "t", [], T0, T1, full=b"whole")
        store.forget_blobs()
        first = store.latest_sent_snapshot("p")
        again = store.sent_snapshot("p", 1)
        assert first is not None and again is not None
        assert again.payload is first.payload and again.full is first.full
        store.forget_blobs()
        fresh = store.latest_sent_snapshot("p")
    assert fresh is not None and fresh.payload is not first.payload
    assert (fresh.payload, fresh.full) == (b"one", b"whole")


def test_what_is_held_is_what_was_written(tmp_path: Path) -> None:
    """A snapshot written as pending is read back, once sent, with the bytes written."""
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_sent_snapshot("p", 1, b"one", "t", [], T0, T1, pending=True, full=b"w")
        pending = store.pending_snapshot("p")
        store.mark_sent("p", 1)
        sent = store.latest_sent_snapshot("p")
    assert pending is not None and sent is not None
    assert (pending.payload, pending.full, sent.payload, sent.full) == (b"one", b"w", b"one", b"w")


def test_a_peer_snapshot_kept_again_with_other_bytes_is_read_anew(tmp_path: Path) -> None:
    first, other = _payload(2), _payload(3)  # two payloads kept under one version
    with AgentStore(tmp_path / "agent.db") as store:
        store.keep_peer_snapshot("p", 2, _env(first), T0)
        kept = store.peer_snapshot("p", 2)
        assert kept is not None and kept.payload == first
        store.keep_peer_snapshot("p", 2, _env(other), T1)
        replaced = store.peer_snapshot("p", 2)
        assert replaced is not None and replaced.payload == other
        assert store.peer_base_digest("p") == hashlib.sha256(other).hexdigest()


def test_a_peer_snapshot_kept_as_it_is_is_not_written_again(
    tmp_path: Path, records: list[CertRecord]
) -> None:
    v2 = snapshot(records[1:], 2, snapshot(records))  # a delta whose base is not kept here
    payload = v2.payload
    with AgentStore(tmp_path / "agent.db") as store:
        store.keep_peer_snapshot("p", 2, _env(payload), T0)
        store.keep_peer_snapshot("p", 2, _env(payload), T1)
        (kept_at,) = store.db.execute("SELECT kept_at FROM peer_snapshots").fetchone()
        assert kept_at == "2026-12-06T00:00:00Z"  # the first keeping stands
        store.keep_peer_snapshot("p", 2, _env(payload, b"other signature"), T1)
        (kept_at,) = store.db.execute("SELECT kept_at FROM peer_snapshots").fetchone()
        assert kept_at == "2026-12-06T01:00:00Z"
        held = store.peer_snapshot("p", 2)  # read, so held for the cycle
        assert held is not None and held.full == b""
        store.keep_peer_snapshot("p", 2, _env(payload, b"other signature"), T0, v2.full)
        (full,) = store.db.execute("SELECT full FROM peer_snapshots").fetchone()
        assert full == v2.full  # a whole set learned later is written
        again = store.peer_snapshot("p", 2)
    assert again is not None and again.full == v2.full  # and read back, not the one held


def test_peer_snapshots_kept_before_their_digest_column_get_one(tmp_path: Path) -> None:
    path, payload = tmp_path / "agent.db", _payload(4)
    before = MIGRATIONS[: [m.__name__ for m in MIGRATIONS].index("m012_peer_snapshot_digests")]
    db = open_database(path, before)
    db.execute(
        "INSERT INTO peer_snapshots (pairing, version, payload_type, payload, signatures,"
        " kept_at) VALUES ('p', 4, 't', ?, '[]', '2026-12-06T00:00:00Z')",
        [payload],
    )
    db.conn.commit()
    db.close()
    with AgentStore(path, create=False) as store:
        base = store.peer_base("p")
        assert base is not None and base.full == payload
        assert base.payload_sha256 == hashlib.sha256(payload).hexdigest()
        assert store.peer_base_digest("p") == base.payload_sha256


def test_a_row_written_by_sql_without_a_digest_is_named_by_its_bytes(tmp_path: Path) -> None:
    payload = _payload(5)
    with AgentStore(tmp_path / "agent.db") as store:
        store.db.execute(
            "INSERT INTO peer_snapshots (pairing, version, payload_type, payload, signatures,"
            " kept_at) VALUES ('p', 5, 't', ?, '[]', '2026-12-06T00:00:00Z')",
            [payload],
        )
        assert store.peer_base_digest("p") == hashlib.sha256(payload).hexdigest()
        base = store.peer_base("p")
    assert base is not None and base.payload_sha256 == hashlib.sha256(payload).hexdigest()


def test_our_whole_sets_are_kept_for_the_two_latest_sent_versions_only(tmp_path: Path) -> None:
    """A whole set is the next delta's base (the latest sent) and the report check's previous
    snapshot (the one before): older ones go once a later version is sent, their payloads
    stay, a pending one counts for nothing yet, another pairing's are not touched."""
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_sent_snapshot("p", 1, b"v1", "t", [], T0, T1)  # a full one: no whole set
        store.record_sent_snapshot("q", 1, b"q1", "t", [], T0, T1, full=b"q-whole")
        for v in range(2, 5):
            store.record_sent_snapshot("p", v, b"v%d" % v, "t", [], T0, T1, full=b"w%d" % v)
        store.record_sent_snapshot("p", 5, b"v5", "t", [], T0, T1, pending=True, full=b"w5")
        while_pending = _sets(store, "p", 5)
        before = store.sent_snapshot("p", 3)  # held for the cycle, with its whole set
        store.mark_sent("p", 5)
        after = store.sent_snapshot("p", 3)
        store.forget_blobs()
        once_sent = _sets(store, "p", 5)
        other = store.sent_snapshot("q", 1)
    assert while_pending == [None, None, b"w3", b"w4", b"w5"]
    assert once_sent == [None, None, None, b"w4", b"w5"]
    assert before is not None and before.full == b"w3"
    assert after is not None and after.full is None  # not what was held before it went
    assert other is not None and other.full == b"q-whole"


def test_a_dropped_pending_snapshot_leaves_the_latest_sent_and_its_previous_whole(
    tmp_path: Path,
) -> None:
    """The report check of a cycle that pushes nothing after a refused push compares the
    latest sent snapshot with the one before: both keep their whole sets."""
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_sent_snapshot("p", 1, b"v1", "t", [], T0, T1)
        for v in (2, 3):
            store.record_sent_snapshot("p", v, b"v%d" % v, "t", [], T0, T1, full=b"w%d" % v)
        store.record_sent_snapshot("p", 4, b"v4", "t", [], T0, T1, pending=True, full=b"w4")
        store.drop_pending("p", 4)
        latest = store.latest_sent_snapshot("p")
        previous = store.sent_snapshot("p", 2)
    assert latest is not None and latest.version == 3 and latest.whole == b"w3"
    assert previous is not None and previous.whole == b"w2"


def _sets(store: AgentStore, pairing: str, last: int) -> list[bytes | None]:
    """The whole sets the store holds for versions 1 to `last`, sent or pending."""
    kept = [store.pushed_snapshot(pairing, v) for v in range(1, last + 1)]
    return [s.full if s else b"(no row)" for s in kept]
