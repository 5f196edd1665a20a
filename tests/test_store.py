"""The agent's database, on the real JPRS intermediates."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.errors import StoreError
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import generate
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.sources.registry import load_source
from invsync.agent.store import agent_store
from invsync.agent.store.agent_store import AgentStore
from tests.paths import SECOM_JPRS

JPRS_BUNDLE = SECOM_JPRS / "jprs_intermediates_all_generations.pem"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
T0 = datetime(2021, 3, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=1, microseconds=250)
REVOKED = datetime(2021, 3, 9, 1, 2, 3, tzinfo=UTC)


def _collection(now: datetime, without: tuple[str, ...] = ()) -> list[CertRecord]:
    """The JPRS bundle as collected at `now`, with a full view on the two bug certificates."""
    records = []
    for record in load_source(str(JPRS_BUNDLE), now):
        if record.sha256 == BUG_OV:
            revocation = Revocation(REVOKED, "cessationOfOperation", "issuance-log:log.jsonl:3")
            record = record.with_view(operator="jprs", lifecycle="unused", revocation=revocation)
        elif record.sha256 == BUG_DV:
            record = record.with_view(operator="jprs", lifecycle="decommissioned")
        if record.sha256 not in without:
            records.append(record)
    return records


def _present_flags(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT sha256, present FROM certificates").fetchall())


def test_inventory_round_trips_every_field(tmp_path: Path) -> None:
    records = _collection(T0)
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(records, T0)
        assert store.inventory() == records
        assert store.count() == 16
    with AgentStore(tmp_path / "agent.db", create=False) as reopened:
        assert reopened.inventory() == records


def test_stored_columns_are_readable_by_people(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
    with sqlite3.connect(tmp_path / "agent.db") as conn:
        row = conn.execute(
            "SELECT serial_hex, not_before, revoked_at, revocation_reason, is_ca, operator"
            " FROM certificates WHERE sha256 = ?",
            [BUG_OV],
        ).fetchone()
    assert row == (
        "22B9B172FA931A5B74",
        "2020-07-10T04:48:56Z",
        "2021-03-09T01:02:03Z",
        "cessationOfOperation",
        1,
        "jprs",
    )


def test_first_seen_is_kept_across_collections(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
        store.replace_inventory(_collection(T1), T1)
        refs = {ref for record in store.inventory() for ref in record.sources}
    assert {(ref.first_seen, ref.last_seen) for ref in refs} == {(T0, T1)}


def test_records_missing_from_a_collection_are_kept_but_not_present(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        store.replace_inventory(_collection(T0), T0)
        store.replace_inventory(_collection(T1, without=(BUG_OV, BUG_DV)), T1)
        assert store.count() == 14
        assert {BUG_OV, BUG_DV}.isdisjoint(r.sha256 for r in store.inventory())
        flags = _present_flags(path)
        assert (len(flags), flags[BUG_OV], flags[BUG_DV]) == (16, 0, 0)
        store.replace_inventory(_collection(T1), T1)
        back = next(r for r in store.inventory() if r.sha256 == BUG_OV)
    assert back.sources[0].first_seen == T0


def _rows_written(store: AgentStore, records: list[CertRecord], now: datetime) -> int:
    """How many rows a collection writes (SQLite's count of rows changed)."""
    before = store.db.conn.total_changes
    store.replace_inventory(records, now)
    return store.db.conn.total_changes - before


def test_a_collection_rewrites_only_the_certificates_that_changed(tmp_path: Path) -> None:
    """Issue 13: a steady collection costs what changed. A certificate row is written only when
    its content changed, a source row only when its source starts or stops listing it; the
    source's read is one row (agent.store.sightings)."""
    with AgentStore(tmp_path / "agent.db") as store:
        assert _rows_written(store, _collection(T0), T0) == 16 + 16 + 1
        assert _rows_written(store, _collection(T1), T1) == 1  # the source's read alone
        moved = [
            r.with_view(operator="secom") if r.sha256 == BUG_DV else r for r in _collection(T1)
        ]
        assert _rows_written(store, moved, T1) == 1 + 1
        # Not present, its source row no longer listed, BUG_DV's operator back, the read.
        assert _rows_written(store, _collection(T1, without=(BUG_OV,)), T1) == 1 + 1 + 1 + 1
        assert {r.sha256: r.operator for r in store.inventory()}[BUG_DV] == "jprs"
        assert store.count() == 15 and BUG_OV not in {r.sha256 for r in store.inventory()}


def test_a_row_an_import_changed_is_put_back_by_the_next_collection(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
        bug = next(r for r in _collection(T1) if r.sha256 == BUG_DV)
        store.import_records([bug.with_view(operator="secom")], T1)
        assert (stored := store.record(BUG_DV)) is not None and stored.operator == "secom"
        store.replace_inventory(_collection(T1), T1)
        assert (stored := store.record(BUG_DV)) is not None and stored.operator == "jprs"


def test_a_certificate_back_with_other_facts_is_written(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
        store.replace_inventory(_collection(T1, without=(BUG_DV,)), T1)
        back = [r.with_view(operator="secom") if r.sha256 == BUG_DV else r for r in _collection(T1)]
        assert _rows_written(store, back, T1) == 1 + 1 + 1  # its row, listed again, the read
        assert (stored := store.record(BUG_DV)) is not None and stored.operator == "secom"
        assert store.count() == 16


def test_rows_stored_before_their_digest_are_written_again(tmp_path: Path) -> None:
    """Or edited by hand: whoever writes the table (another connection) clears the digest."""
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
        with sqlite3.connect(tmp_path / "agent.db") as other:
            other.execute("UPDATE certificates SET row_digest = NULL")
        assert _rows_written(store, _collection(T1), T1) == 16 + 1


def test_a_steady_collection_encodes_only_the_rows_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: the store keeps each record's row digest from the last collection, so a record
    stored as it is (its CertInfo and every field but its sources) is not encoded again."""
    encoded: list[str] = []
    real_digest = agent_store.row_digest

    def counted(row: dict[str, object]) -> str:
        encoded.append(str(row["sha256"]))
        return real_digest(row)

    monkeypatch.setattr(agent_store, "row_digest", counted)
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)
        assert len(encoded) == 16
        encoded.clear()
        store.replace_inventory(_collection(T1), T1)  # new sightings, same rows
        assert encoded == []
        revoked = Revocation(REVOKED, "keyCompromise", "issuance-log:log.jsonl:3")
        moved = [
            r.with_view(revocation=revoked) if r.sha256 == BUG_DV else r for r in _collection(T1)
        ]
        assert _rows_written(store, moved, T1) == 1 + 1 and encoded == [BUG_DV]
        stored = store.record(BUG_DV)
        assert stored is not None and stored.revocation == revoked
    encoded.clear()
    with AgentStore(tmp_path / "agent.db") as reopened:  # a new process keeps nothing
        assert _rows_written(reopened, moved, T1) == 1 and len(encoded) == 16
    encoded.clear()
    with AgentStore(tmp_path / "agent.db", keeps=False) as once:  # `agent run --once`'s
        for _ in range(2):
            assert _rows_written(once, moved, T1) == 1  # each row as stored: the read alone
        assert len(encoded) == 2 * 16


def test_failed_replace_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "agent.db"
    store = AgentStore(path)
    store.replace_inventory(_collection(T0, without=(BUG_DV,)), T0)
    before, flags = store.inventory(), _present_flags(path)
    real_row = agent_store._certificate_row

    def failing_row(record: CertRecord, digest: str | None = None) -> dict[str, object]:
        # The last record's insert hits the NOT NULL constraint, after 15 good writes.
        row = real_row(record, digest)
        return {**row, "sha256": None} if record.sha256 == BUG_DV else row

    monkeypatch.setattr(agent_store, "_certificate_row", failing_row)
    changed = [r.with_view(operator="secom") for r in _collection(T1, without=(BUG_OV,))]
    expected = (
        f"{path}: cannot store the inventory: NOT NULL constraint failed: certificates.sha256"
    )
    with pytest.raises(StoreError, match=re.escape(expected)):
        store.replace_inventory(sorted(changed, key=lambda r: r.sha256 == BUG_DV), T1)
    assert store.inventory() == before
    assert _present_flags(path) == flags
    store.close()


def test_naive_time_is_refused(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store, pytest.raises(StoreError, match="no timezone"):
        store.replace_inventory(_collection(T0), datetime(2021, 3, 1))


def test_certificate_with_other_der_is_reported_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        store.replace_inventory(_collection(T0), T0)
    with sqlite3.connect(path) as conn:
        der = conn.execute("SELECT der FROM certificates WHERE sha256 = ?", [BUG_DV]).fetchone()[0]
        conn.execute("UPDATE certificates SET der = ? WHERE sha256 = ?", [der, BUG_OV])
    with AgentStore(path) as store, pytest.raises(StoreError, match=f"{BUG_OV} has other DER"):
        store.inventory()
    with AgentStore(path) as store:  # the next collection writes the damaged row again
        store.replace_inventory(_collection(T1), T1)
        repaired = {r.sha256: r.info.der for r in store.inventory()}
        assert repaired == {r.sha256: r.info.der for r in _collection(T1)}


def test_only_a_collection_after_another_writer_reads_the_der_back(tmp_path: Path) -> None:
    """A daemon's rows are the ones it wrote until another connection writes: only then (and at
    its first collection) is each stored DER read back to find damaged rows; in between it
    reads no row at all, knowing each one's digest. A one-shot store reads the digests."""
    statements: list[str] = []
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        store.db.conn.set_trace_callback(statements.append)
        for day in range(3):
            statements.clear()
            store.replace_inventory(_collection(T0 + timedelta(days=day)), T0)
            reads_der = any("row_digest, der FROM certificates" in s for s in statements)
            reads_rows = any("row_digest" in s and "SELECT" in s for s in statements)
            assert (reads_der, reads_rows) == (day == 0, day == 0)
        with sqlite3.connect(path) as other:
            der = other.execute(
                "SELECT der FROM certificates WHERE sha256 = ?", [BUG_DV]
            ).fetchone()[0]
            other.execute("UPDATE certificates SET der = ? WHERE sha256 = ?", [der, BUG_OV])
        statements.clear()
        store.replace_inventory(_collection(T1), T1)
        assert any("row_digest, der FROM certificates" in s for s in statements)
        assert store.inventory() == store.as_stored(_collection(T1))  # repaired
    with AgentStore(path, keeps=False) as once:
        once.db.conn.set_trace_callback(statements.append)
        for _ in range(2):
            statements.clear()
            once.replace_inventory(_collection(T1), T1)
            assert any("SELECT sha256, row_digest" in s for s in statements)


def test_sent_snapshots(tmp_path: Path) -> None:
    sigs = [("ab" * 32, b"\x01sig"), ("cd" * 32, b"\x02sig")]
    with AgentStore(tmp_path / "agent.db") as store:
        assert store.latest_sent_snapshot("secom-jprs") is None
        store.record_sent_snapshot("secom-jprs", 1, b"one", "t", sigs, T0, T1)
        store.record_sent_snapshot("secom-jprs", 2, b"two", "t", sigs[:1], T1, T1 + timedelta(1))
        store.record_sent_snapshot("other", 7, b"x", "t", [], T0, T1)
        latest = store.latest_sent_snapshot("secom-jprs")
        first = store.sent_snapshot("secom-jprs", 1)
    assert latest is not None and first is not None
    assert (latest.version, latest.payload, latest.signatures) == (2, b"two", (sigs[0],))
    assert first.signatures == tuple(sigs)
    assert (first.issued_at, first.expires_at) == (T0, T1)
    assert (
        first.payload_sha256 == "7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
    )


def test_a_sent_version_is_never_reused_with_other_bytes(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.record_sent_snapshot("p", 1, b"one", "t", [], T0, T1)
        store.record_sent_snapshot("p", 1, b"one", "t", [], T0, T1)  # a retry: no-op
        with pytest.raises(StoreError, match="snapshot p v1 was already sent with other bytes"):
            store.record_sent_snapshot("p", 1, b"forged", "t", [], T0, T1)
        snapshot = store.sent_snapshot("p", 1)
    assert snapshot is not None and snapshot.payload == b"one"


def test_cosigned_reports(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        assert not store.has_cosigned("r1")
        store.record_cosigned("r1", "secom-jprs", T0)
        store.record_cosigned("r1", "secom-jprs", T1)
        assert store.has_cosigned("r1")
        assert not store.has_cosigned("r2")
        rows = store.db.execute("SELECT signed_at FROM cosigned_reports").fetchall()
    assert rows == [("2021-03-01T00:00:00Z",)]


def test_a_peer_rotation_is_recorded_once_and_survives_a_reopen(tmp_path: Path) -> None:
    old, new = generate(), generate()
    rotation = Rotation("secom", "secom-jprs", 4, new.public, (old.public,))
    path = tmp_path / "jprs.db"
    with AgentStore(path) as store:
        store.record_rotation(rotation, datetime(2021, 3, 1, tzinfo=UTC))
        store.record_rotation(rotation, datetime(2021, 3, 2, tzinfo=UTC))  # seen again: no-op
    with AgentStore(path, create=False) as store:
        assert store.rotations("secom") == [rotation]
        assert store.rotations("jprs") == []


def test_a_certificate_listed_twice_is_worked_out_from_the_database_next_time(
    tmp_path: Path,
) -> None:
    """Each copy of a certificate listed twice whose content differs from the stored row is
    written, the last winning; the next collection must not take the digests it kept for the
    row's content (an independent review found the row left with the wrong copy)."""
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collection(T0), T0)  # the row holds operator jprs
        clean = _collection(T1)
        bug = next(r for r in clean if r.sha256 == BUG_DV)
        store.replace_inventory([bug.with_view(operator="secom"), *clean], T1)
        assert (stored := store.record(BUG_DV)) is not None and stored.operator == "secom"
        store.replace_inventory(_collection(T1), T1)
        assert (stored := store.record(BUG_DV)) is not None and stored.operator == "jprs"


def test_the_partys_signing_keys_stay_recorded_once_the_configuration_drops_one(
    tmp_path: Path,
) -> None:
    """What an evidence export reads for the party's own keys (agent.evidence.remote): the
    first key stays after a rotation replaced it in the configuration, and is kept once."""
    first, second = generate(), generate()
    at = datetime(2026, 12, 7, tzinfo=UTC)
    with AgentStore(tmp_path / "secom.db") as store:
        store.record_own_keys([first.public], at)
        store.record_own_keys([first.public, second.public], at + timedelta(days=1))
        store.record_own_keys([second.public], at + timedelta(days=2))  # rotation completed
    with AgentStore(tmp_path / "secom.db", create=False) as store:
        assert [k.keyid for k in store.own_keys()] == [first.public.keyid, second.public.keyid]
        assert [k.spki_der for k in store.own_keys()] == [
            first.public.spki_der,
            second.public.spki_der,
        ]
