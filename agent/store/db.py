"""Opening a SQLite database the one way invsync does (DESIGN §9).

WAL, `synchronous=FULL` and a busy timeout, so a kill -9 leaves the old or the new state and a
second process waits instead of failing; foreign keys on; the schema as an ordered list of named
migrations recorded in `_migrations`. A file that is not a database, is corrupt, or was migrated
by a newer invsync is refused with a StoreError: it is never re-initialized.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import sqlite_utils

from invsync.agent.errors import StoreError
from invsync.agent.times import rfc3339, utc_now

BUSY_TIMEOUT_MS = 5000
MIGRATIONS_TABLE = "_migrations"


class Migration(Protocol):
    """A schema step: a function of the database, recorded under its `__name__` once applied."""

    __name__: str

    def __call__(self, db: sqlite_utils.Database, /) -> None: ...


def open_database(
    path: Path, migrations: Sequence[Migration], *, create: bool = True, threaded: bool = False
) -> sqlite_utils.Database:
    """Open (or, with `create`, create) the database at `path` and apply pending migrations.

    `threaded` lets other threads use the connection; the caller must then serialize its use
    (the server's store holds a lock around every call).
    """
    _check_names(migrations)
    _ensure_exists(path, create)
    db = _connect(path, threaded)
    try:
        with _wrapped(f"{path}: cannot open database"):
            _configure(db, path)
            _migrate(db, path, migrations)
    except BaseException:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite_utils.Database, what: str) -> Iterator[sqlite_utils.Database]:
    """`db.atomic()`, with SQLite's errors (locked, full, corrupt) as a StoreError about `what`."""
    with _wrapped(what), db.atomic():
        yield db


@contextmanager
def _wrapped(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(f"{what}: {e}") from e


def _check_names(migrations: Sequence[Migration]) -> None:
    names = [migration.__name__ for migration in migrations]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise StoreError(f"migration names must be unique, repeated: {', '.join(duplicates)}")


def _ensure_exists(path: Path, create: bool) -> None:
    if path.exists():
        return
    if not create:
        raise StoreError(f"{path}: database does not exist")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{path}: cannot create the database directory: {e}") from e


def _connect(path: Path, threaded: bool) -> sqlite_utils.Database:
    with _wrapped(f"{path}: cannot open database"):
        conn = sqlite3.connect(path, check_same_thread=not threaded)
        # No plugins: whatever sqlite-utils plugins are installed must not touch our connection.
        return sqlite_utils.Database(conn, execute_plugins=False)


def _configure(db: sqlite_utils.Database, path: Path) -> None:
    # busy_timeout first, so that even the next pragmas wait for a concurrent writer.
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    check = [str(row[0]) for row in db.execute("PRAGMA quick_check").fetchall()]
    if check != ["ok"]:
        problems = [line for row in check for line in row.splitlines() if "***" not in line]
        raise StoreError(f"{path}: database is corrupt: {'; '.join(problems[:3])}")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot use WAL journal mode (SQLite kept {mode!r})")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")


def _migrate(db: sqlite_utils.Database, path: Path, migrations: Sequence[Migration]) -> None:
    if not _pending(db, path, migrations):
        return
    # IMMEDIATE takes the write lock before re-reading, so two processes opening a new database
    # at once cannot both apply the same migration.
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        for migration in _pending(db, path, migrations):
            _apply(db, path, migration)
    except BaseException:
        db.rollback()
        raise
    db.commit()


def _pending(
    db: sqlite_utils.Database, path: Path, migrations: Sequence[Migration]
) -> list[Migration]:
    applied = _applied(db, path)
    known = {migration.__name__ for migration in migrations}
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise StoreError(
            f"{path}: the database has migration {unknown[0]!r}, which this version of invsync"
            " does not know (was it written by a newer version?)"
        )
    return [migration for migration in migrations if migration.__name__ not in applied]


def _applied(db: sqlite_utils.Database, path: Path) -> list[str]:
    tables = set(db.table_names())
    if MIGRATIONS_TABLE in tables:
        rows = db.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY rowid").fetchall()
        return [str(row[0]) for row in rows]
    if tables:
        # Tables but no migration record: some other program's database, not ours to change.
        raise StoreError(f"{path}: not an invsync database (tables but no {MIGRATIONS_TABLE})")
    return []


def _apply(db: sqlite_utils.Database, path: Path, migration: Migration) -> None:
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE}"
        " (name TEXT PRIMARY KEY NOT NULL, applied_at TEXT NOT NULL)"
    )
    with _wrapped(f"{path}: migration {migration.__name__!r} failed"):
        migration(db)
    applied_at = rfc3339(utc_now())
    db.execute(
        f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
        [migration.__name__, applied_at],
    )
