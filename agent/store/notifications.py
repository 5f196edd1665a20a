"""The notification outbox in the agent's database: every event for every channel recorded as
pending before it is sent and marked sent after, so that a restart forgets nothing and sends
again only what it may have sent without marking it (at least once: a crash, or a cut-off
answer, between a send and its mark sends the event again, with the same `event_id`); each
channel's last success and failure; and the little state the notifier keeps between cycles
(each pairing's last report body seen, the failed cycles in a row).

Rows are plain text here: what an event is belongs to `agent.notify`, above the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from invsync.agent.store.db import transaction
from invsync.agent.times import parse_rfc3339, rfc3339


def m018_notifications(db: sqlite_utils.Database) -> None:
    """The outbox (`event_id`, `channel` once each: a second enqueue is ignored), each
    channel's last outcomes, and the notifier's state by name."""
    db.execute(
        """CREATE TABLE notify_outbox (
        event_id TEXT NOT NULL, channel TEXT NOT NULL, event TEXT NOT NULL,
        state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt TEXT NOT NULL,
        last_error TEXT, created_at TEXT NOT NULL, sent_at TEXT,
        PRIMARY KEY (event_id, channel))"""
    )
    db.execute("CREATE INDEX notify_outbox_pending ON notify_outbox (state, next_attempt)")
    db.execute(
        """CREATE TABLE notify_channels (
        channel TEXT PRIMARY KEY NOT NULL, last_success TEXT, last_failure TEXT,
        last_error TEXT)"""
    )
    db.execute("CREATE TABLE notify_state (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)")


PENDING = "pending"
SENT = "sent"
DROPPED = "dropped"  # a row no send can ever take (it does not decode): kept, never tried


@dataclass(frozen=True)
class Queued:
    event_id: str
    channel: str
    event: str  # the event's JSON
    attempts: int


@dataclass(frozen=True)
class ChannelState:
    channel: str
    pending: int
    last_success: datetime | None
    last_failure: datetime | None
    last_error: str | None


class NotificationStore:
    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def enqueue(self, rows: Iterable[tuple[str, str, str]], now: datetime) -> int:
        """Record (event id, channel, event JSON) rows as pending, due now; a row already
        recorded, pending or sent, is left as it is. How many were new."""
        at = rfc3339(now)
        params = [(e, c, j, PENDING, 0, at, at) for e, c, j in rows]
        with transaction(self.db, "notification outbox") as db:
            before = db.execute("SELECT total_changes()").fetchone()[0]
            db.conn.executemany(
                """INSERT OR IGNORE INTO notify_outbox (event_id, channel, event, state,
                attempts, next_attempt, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
                params,
            )
            after = db.execute("SELECT total_changes()").fetchone()[0]
        return int(after - before)

    def due(self, now: datetime, channels: Iterable[str]) -> list[Queued]:
        """The pending rows of `channels` whose next attempt is due, oldest first."""
        names = list(channels)
        marks = ", ".join("?" for _ in names)
        # The event as bytes: text that is not UTF-8 would fail the whole query, every row.
        rows = self.db.execute(
            f"""SELECT event_id, channel, CAST(event AS BLOB), attempts FROM notify_outbox
            WHERE state = ? AND next_attempt <= ? AND channel IN ({marks})
            ORDER BY created_at, event_id""",
            [PENDING, rfc3339(now), *names],
        ).fetchall()
        return [Queued(e, c, bytes(j).decode("utf-8", "replace"), n) for e, c, j, n in rows]

    def mark_sent(self, row: Queued, now: datetime) -> None:
        at = rfc3339(now)
        with transaction(self.db, "notification outbox") as db:
            db.execute(
                """UPDATE notify_outbox SET state = ?, sent_at = ?, attempts = attempts + 1,
                last_error = NULL WHERE event_id = ? AND channel = ?""",
                [SENT, at, row.event_id, row.channel],
            )
            self._channel(db, row.channel, "last_success", at, None)

    def mark_failed(self, row: Queued, error: str, retry_at: datetime, now: datetime) -> None:
        with transaction(self.db, "notification outbox") as db:
            db.execute(
                """UPDATE notify_outbox SET attempts = attempts + 1, next_attempt = ?,
                last_error = ? WHERE event_id = ? AND channel = ?""",
                [rfc3339(retry_at), error, row.event_id, row.channel],
            )
            self._channel(db, row.channel, "last_failure", rfc3339(now), error)

    def postpone(self, rows: Iterable[Queued], retry_at: datetime) -> None:
        """Rows not tried (their channel just failed) due again at `retry_at`."""
        params = [(rfc3339(retry_at), row.event_id, row.channel) for row in rows]
        with transaction(self.db, "notification outbox") as db:
            db.conn.executemany(
                "UPDATE notify_outbox SET next_attempt = ? WHERE event_id = ? AND channel = ?",
                params,
            )

    def mark_dropped(self, row: Queued, error: str, now: datetime) -> None:
        with transaction(self.db, "notification outbox") as db:
            db.execute(
                """UPDATE notify_outbox SET state = ?, last_error = ?
                WHERE event_id = ? AND channel = ?""",
                [DROPPED, error, row.event_id, row.channel],
            )
            self._channel(db, row.channel, "last_failure", rfc3339(now), error)

    @staticmethod
    def _channel(
        db: sqlite_utils.Database, channel: str, column: str, at: str, error: str | None
    ) -> None:
        db.execute("INSERT OR IGNORE INTO notify_channels (channel) VALUES (?)", [channel])
        if column == "last_success":
            db.execute(
                "UPDATE notify_channels SET last_success = ? WHERE channel = ?", [at, channel]
            )
        else:
            db.execute(
                "UPDATE notify_channels SET last_failure = ?, last_error = ? WHERE channel = ?",
                [at, error, channel],
            )

    def channel_states(self, channels: Iterable[str]) -> list[ChannelState]:
        return [self._state(name) for name in channels]

    def _state(self, channel: str) -> ChannelState:
        (pending,) = self.db.execute(
            "SELECT count(*) FROM notify_outbox WHERE channel = ? AND state = ?",
            [channel, PENDING],
        ).fetchone()
        row = self.db.execute(
            """SELECT last_success, last_failure, last_error FROM notify_channels
            WHERE channel = ?""",
            [channel],
        ).fetchone()
        success, failure, error = row if row else (None, None, None)
        return ChannelState(channel, int(pending), _time(success), _time(failure), error)

    def value(self, name: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM notify_state WHERE name = ?", [name]).fetchone()
        return None if row is None else bytes(row[0])

    def set_value(self, name: str, value: bytes) -> None:
        with transaction(self.db, "notification state") as db:
            db.execute(
                """INSERT INTO notify_state (name, value) VALUES (?, ?)
                ON CONFLICT (name) DO UPDATE SET value = excluded.value""",
                [name, value],
            )


def _time(text: str | None) -> datetime | None:
    return None if text is None else parse_rfc3339(text)
