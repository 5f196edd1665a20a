"""The notifier's outbox in a real agent database, with real receivers: every event once per
channel across a restart, a channel down retried after a doubling wait until it is back, a
failing channel that does not keep the others from sending, and failed cycles in a row."""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.config.notify import (
    Channel,
    CommandChannel,
    Notify,
    NotifySettings,
    Secret,
    SmtpChannel,
    Wants,
    WebhookChannel,
)
from invsync.agent.errors import TransportError
from invsync.agent.notify.diff import report_events
from invsync.agent.notify.events import Event
from invsync.agent.notify.outbox import Notifier
from invsync.agent.report.body import ReportBody, build_report_body, parse_report_body
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.telemetry import metrics
from tests.notify_receivers import WEBHOOK_SECRET, Hooks, smtp_server, webhook_receiver
from tests.report_helpers import AS_OF, ROOT_REF, SUB_REF, demo_findings, signers

SETTINGS = NotifySettings(failing_cycles=3, initial_backoff_seconds=60, max_backoff_seconds=600)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2021, 3, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _report() -> tuple[bytes, ReportBody]:
    data = build_report_body(
        pairing="secom-jprs",
        as_of=AS_OF,
        root=ROOT_REF,
        subordinate=SUB_REF,
        findings=demo_findings(),
        signers=signers(),
    )
    return data, parse_report_body(data)


@pytest.fixture
def hooks() -> Iterator[tuple[Hooks, str]]:
    with webhook_receiver() as receiver:
        yield receiver


def _webhook(url: str) -> WebhookChannel:
    secret = Secret("agent.toml: notify[0].secret_env", env="INVSYNC_TEST_HOOK")
    return WebhookChannel("soc", Wants(), url, secret)


def _notifier(db: Path, clock: Clock, *channels: Channel) -> tuple[Notifier, AgentStore]:
    store = AgentStore(db)
    notify = Notify(channels, SETTINGS)
    return Notifier(notify, store.notifications, "secom", clock), store


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)


def test_every_event_is_sent_once_across_a_restart(
    tmp_path: Path, hooks: tuple[Hooks, str]
) -> None:
    received, url = hooks
    clock = Clock()
    data, body = _report()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    notifier.report_written(data, body)
    notifier.cycle_ended(None)
    store.close()
    # Errors only (the default): two opened, two overdue.
    assert sorted(e["kind"] for e in received.events) == ["finding-opened"] * 2 + ["overdue"] * 2
    # After a restart the database still holds the last report seen, and the outbox the ids.
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    notifier.report_written(data, body)
    notifier.enqueue(report_events(None, body, "secom", clock()))  # found again, as if anew
    notifier.cycle_ended(None)
    (state,) = store.notifications.channel_states(["soc"])
    store.close()
    assert len(received.events) == 4
    assert len({e["event_id"] for e in received.events}) == 4
    assert state.pending == 0 and state.last_success == clock.now


def test_a_channel_down_is_retried_after_a_doubling_wait(
    tmp_path: Path, hooks: tuple[Hooks, str]
) -> None:
    received, url = hooks
    clock = Clock()
    data, body = _report()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    received.status = 503
    before = metrics.NOTIFICATIONS.labels("soc", metrics.FAILED)._value.get()
    notifier.report_written(data, body)
    notifier.cycle_ended(None)
    (state,) = store.notifications.channel_states(["soc"])
    assert state.pending == 4 and state.last_error is not None and "HTTP 503" in state.last_error
    # Tried once: the other three wait as long as the first, untried.
    assert metrics.NOTIFICATIONS.labels("soc", metrics.FAILED)._value.get() == before + 1
    assert metrics.NOTIFICATIONS_PENDING.labels("soc")._value.get() == 4
    clock.now += timedelta(seconds=30)  # before the first wait (60 s) is over: not tried
    notifier.flush()
    assert metrics.NOTIFICATIONS.labels("soc", metrics.FAILED)._value.get() == before + 1
    clock.now += timedelta(seconds=31)  # tried again, still down: now waits 120 s
    notifier.flush()
    assert metrics.NOTIFICATIONS.labels("soc", metrics.FAILED)._value.get() == before + 2
    received.status = 200
    clock.now += timedelta(seconds=100)
    notifier.flush()
    assert received.events == []
    store.close()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))  # a restart between
    clock.now += timedelta(seconds=21)
    notifier.flush()
    assert len(received.events) == 4
    (state,) = store.notifications.channel_states(["soc"])
    store.close()
    assert state.pending == 0 and state.last_success == clock.now


def test_a_failing_channel_does_not_keep_the_others_from_sending(
    tmp_path: Path, hooks: tuple[Hooks, str]
) -> None:
    received, url = hooks
    clock = Clock()
    data, body = _report()
    broken = CommandChannel("pager", Wants(), ("/nonexistent/pager",))
    with smtp_server() as (mailbox, port):
        mail = SmtpChannel(
            "mail", Wants(), "127.0.0.1", port, "none", "a@secom.example", ("b@secom.example",)
        )
        notifier, store = _notifier(tmp_path / "a.db", clock, broken, mail, _webhook(url))
        notifier.report_written(data, body)
        notifier.cycle_ended(None)
    states = {s.channel: s for s in store.notifications.channel_states(["pager", "mail", "soc"])}
    store.close()
    assert len(mailbox.messages) == 4 and len(received.events) == 4
    assert states["pager"].pending == 4
    assert "cannot run /nonexistent/pager" in (states["pager"].last_error or "")
    assert states["mail"].pending == 0 and states["soc"].pending == 0


def test_failed_cycles_in_a_row_make_one_event(tmp_path: Path, hooks: tuple[Hooks, str]) -> None:
    received, url = hooks
    clock = Clock()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    down = TransportError("cannot reach the exchange server at localhost:7443")
    for _ in range(2):
        notifier.cycle_ended(down)
    assert received.events == []
    store.close()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))  # the count survives
    for _ in range(3):
        notifier.cycle_ended(down)
    (event,) = received.events
    assert event["kind"] == "cycle-failing"
    assert event["message"].startswith("3 cycles failed in a row; the last: cannot reach")
    notifier.cycle_ended(None)
    for _ in range(3):
        clock.now += timedelta(hours=1)
        notifier.cycle_ended(down)
    store.close()
    assert [e["kind"] for e in received.events] == ["cycle-failing", "cycle-failing"]


def test_without_channels_nothing_is_stored(tmp_path: Path) -> None:
    clock = Clock()
    data, body = _report()
    notifier, store = _notifier(tmp_path / "a.db", clock)
    notifier.report_written(data, body)
    notifier.cycle_ended(None)
    assert store.notifications.value("report:secom-jprs") is None
    store.close()


def test_a_channel_down_is_tried_once_a_flush_not_once_an_event(tmp_path: Path) -> None:
    # A command that runs over the timeout: eight events must not cost eight timeouts.
    tries = tmp_path / "tries"
    script = f"import time; open({str(tries)!r}, 'a').write('x'); time.sleep(30)"
    slow = CommandChannel("pager", Wants(), (sys.executable, "-c", script))
    clock = Clock()
    notifier, store = _notifier(tmp_path / "a.db", clock, slow)
    notifier.notify = Notify((slow,), replace(SETTINGS, timeout_seconds=0.5))
    events = [
        Event("cycle-failing", "secom", clock(), f"run {i}", occurrence=str(i)) for i in range(8)
    ]
    assert notifier.enqueue(events) == 8
    notifier.flush()
    assert tries.read_text() == "x"
    (state,) = store.notifications.channel_states(["pager"])
    assert state.pending == 8 and "ran over 0.5 s" in (state.last_error or "")
    clock.now += timedelta(seconds=61)  # all eight due again: still one try
    notifier.flush()
    assert tries.read_text() == "xx"
    attempts = store.notifications.db.execute("SELECT sum(attempts) FROM notify_outbox").fetchone()
    store.close()
    assert attempts == (2,)


def test_a_damaged_outbox_row_is_dropped_and_the_others_are_sent(
    tmp_path: Path, hooks: tuple[Hooks, str], caplog: pytest.LogCaptureFixture
) -> None:
    received, url = hooks
    clock = Clock()
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    events = [
        Event("cycle-failing", "secom", clock(), f"run {i}", occurrence=str(i)) for i in range(3)
    ]
    notifier.enqueue(events)
    store.close()
    # Damaged in the file itself, as a disk or a hand might: the oldest row first, so it
    # sorts before the others at every flush; then one that is not even UTF-8.
    with sqlite3.connect(tmp_path / "a.db") as db:
        ids = [row[0] for row in db.execute("SELECT event_id FROM notify_outbox ORDER BY event_id")]
        db.execute("UPDATE notify_outbox SET event = '{\"kind\": ' WHERE event_id = ?", [ids[0]])
        db.execute(
            "UPDATE notify_outbox SET event = CAST(X'7BFF' AS TEXT) WHERE event_id = ?", [ids[1]]
        )
    notifier, store = _notifier(tmp_path / "a.db", clock, _webhook(url))
    with caplog.at_level(logging.ERROR):
        notifier.flush()
        notifier.flush()  # the damaged rows are not tried again
    (state,) = store.notifications.channel_states(["soc"])
    store.close()
    assert [e["message"] for e in received.events] == [
        e.message for e in events if e.event_id == ids[2]
    ]
    assert state.pending == 0 and "does not decode" in (state.last_error or "")
    assert caplog.text.count("notification dropped: soc: outbox row") == 2
