"""Opening SQLite databases: pragmas, migrations, and refusing what is not ours."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from invsync.agent.errors import StoreError
from invsync.agent.store.db import open_database, transaction


def m001_things(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


def m002_thing_colour(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE things ADD COLUMN colour TEXT")


def m003_broken(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE later (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO no_such_table VALUES (1)")


def _applied(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_pragmas_are_set(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db", [m001_things])
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    db.close()


def test_missing_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "state" / "deep" / "a.db"
    open_database(path, [m001_things]).close()
    assert "things" in _tables(path)


def test_missing_file_without_create_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with pytest.raises(StoreError, match=re.escape(f"{path}: database does not exist")):
        open_database(path, [m001_things], create=False)
    assert not path.exists()


def test_migrations_are_applied_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_database(path, [m001_things]).close()
    db = open_database(path, [m001_things, m002_thing_colour])
    db.execute("INSERT INTO things (name, colour) VALUES ('x', 'red')")
    db.close()
    open_database(path, [m001_things, m002_thing_colour]).close()
    assert _applied(path) == ["m001_things", "m002_thing_colour"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM things").fetchone()[0] == 1


def test_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_database(path, [m001_things]).close()
    expected = f"{path}: migration 'm003_broken' failed: no such table: no_such_table"
    with pytest.raises(StoreError, match=re.escape(expected)):
        open_database(path, [m001_things, m002_thing_colour, m003_broken])
    assert _applied(path) == ["m001_things"]
    assert "later" not in _tables(path)
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(things)")]
    assert "colour" not in columns


def test_unknown_migration_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_database(path, [m001_things, m002_thing_colour]).close()
    expected = f"{path}: the database has migration 'm002_thing_colour', which this version"
    with pytest.raises(StoreError, match=re.escape(expected)):
        open_database(path, [m001_things])


def test_random_bytes_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(StoreError, match=re.escape(f"{path}: cannot open database: ")) as info:
        open_database(path, [m001_things])
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)
    assert path.read_bytes() == junk
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db"]


def test_corrupt_page_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    db = open_database(path, [m001_things])
    with transaction(db, "fill"):
        for n in range(2000):
            db.execute("INSERT INTO things (name) VALUES (?)", [f"thing {n} " * 5])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    page = 4096 * 20  # a leaf page of `things`, well past the schema
    data[page + 8 : page + 60] = b"\xff" * 52  # its cell pointers now point out of the page
    path.write_bytes(bytes(data))
    # SQLite reports this damage either as quick_check rows or by failing the check itself.
    damage = "(database is corrupt: On tree page 21 cell |cannot open database: .*malformed)"
    with pytest.raises(StoreError, match=re.escape(f"{path}: ") + damage):
        open_database(path, [m001_things])
    assert path.read_bytes() == bytes(data)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER)")
    expected = f"{path}: not an invsync database (tables but no _migrations)"
    with pytest.raises(StoreError, match=re.escape(expected)):
        open_database(path, [m001_things])
    assert _tables(path) == {"accounts"}


def test_duplicate_migration_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="repeated: m001_things"):
        open_database(tmp_path / "a.db", [m001_things, m001_things])


def test_transaction_rolls_back_and_wraps_sqlite_errors(tmp_path: Path) -> None:
    db = open_database(tmp_path / "a.db", [m001_things])
    expected = re.escape("saving things: NOT NULL constraint failed")
    with pytest.raises(StoreError, match=expected), transaction(db, "saving things"):
        db.execute("INSERT INTO things (name) VALUES ('kept?')")
        db.execute("INSERT INTO things (name) VALUES (NULL)")
    assert db.execute("SELECT count(*) FROM things").fetchone()[0] == 0
    db.close()
