"""The notifier of a daemon: events enqueued in the agent's database (every event for every
channel that wants it, as pending, before anything is sent), then the outbox flushed: each due
row sent, marked sent, or tried again later after a doubling wait (`[notify_settings]`), across
cycles and restarts.

Nothing here stops a cycle: a channel that fails is logged, counted and shown by
`invsync status`, and the other channels are still sent; whatever else goes wrong (the database
itself) is logged and left for the next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

from invsync.agent.config.notify import Channel, Notify
from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.notify.channels import send, wants
from invsync.agent.notify.diff import report_events
from invsync.agent.notify.events import Event, event_from_bytes
from invsync.agent.report.body import ReportBody, parse_report_body
from invsync.agent.store.notifications import NotificationStore, Queued
from invsync.agent.telemetry import metrics
from invsync.agent.times import rfc3339

_log = logging.getLogger("invsync.agent.notify")

ERROR_CHARS = 300
_FAILED_CYCLES = "failed_cycles"


class Notifier:
    def __init__(
        self,
        notify: Notify,
        store: NotificationStore,
        party: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.notify, self.store, self.party, self.clock = notify, store, party, clock
        self.channels = {c.name: c for c in notify.channels}

    def report_written(self, body_bytes: bytes, body: ReportBody) -> None:
        """The events of a pairing's new report against the last one seen, enqueued; the
        report becomes the last one seen. Sent at the cycle's end (`cycle_ended`)."""
        if not self.channels:
            return
        with _never_raises("report events"):
            key = f"report:{body.pairing}"
            seen = self.store.value(key)
            previous = None if seen is None else parse_report_body(seen)
            if previous is not None and previous.report_id == body.report_id:
                return
            self.enqueue(report_events(previous, body, self.party, self.clock()))
            self.store.set_value(key, body_bytes)

    def cycle_ended(self, error: InvsyncError | None) -> None:
        """Count failed cycles in a row (one `cycle-failing` event when they reach the
        threshold, another only after a cycle succeeded), then flush the outbox."""
        if not self.channels:
            return
        with _never_raises("cycle events"):
            self._count_cycle(error)
        self.flush()

    def _count_cycle(self, error: InvsyncError | None) -> None:
        raw = self.store.value(_FAILED_CYCLES)
        failed = 0 if error is None else int(raw or b"0") + 1
        self.store.set_value(_FAILED_CYCLES, str(failed).encode())
        if failed == self.notify.settings.failing_cycles:
            now = self.clock()
            message = f"{failed} cycles failed in a row; the last: {bounded(error, ERROR_CHARS)}"
            event = Event(
                "cycle-failing", self.party, now, message, occurrence=_started(now, failed)
            )
            self.enqueue([event])

    def enqueue(self, events: Sequence[Event]) -> int:
        rows = [
            (event.event_id, channel.name, event.to_bytes().decode())
            for event in events
            for channel in self.channels.values()
            if wants(channel, event)
        ]
        added = self.store.enqueue(rows, self.clock()) if rows else 0
        if added:
            _log.info("%d notification(s) queued", added)
        return added

    def flush(self) -> None:
        """Send every due row; a failed one waits (doubling) for a later flush. A channel that
        fails is tried once a flush: its other due rows wait as long, untried, so a channel
        down costs a cycle one timeout, not one per event."""
        with _never_raises("notification outbox"):
            down: dict[str, datetime] = {}
            untried: dict[str, list[Queued]] = {}
            for row in self.store.due(self.clock(), self.channels):
                if row.channel in down:
                    untried.setdefault(row.channel, []).append(row)
                    continue
                retry_at = self._send(row, self.channels[row.channel])
                if retry_at is not None:
                    down[row.channel] = retry_at
            for name, rows in untried.items():
                self.store.postpone(rows, down[name])
                _log.warning("%d more notification(s) on %s wait as long", len(rows), name)
            for state in self.store.channel_states(self.channels):
                metrics.NOTIFICATIONS_PENDING.labels(state.channel).set(state.pending)

    def _send(self, row: Queued, channel: Channel) -> datetime | None:
        """Send one row and mark it; when it failed, when it is tried again."""
        try:
            event = event_from_bytes(row.event.encode())
        except Exception as e:  # a damaged row (bad JSON, a key missing): no try can send it
            shown = f"{channel.name}: outbox row {row.event_id[:16]} does not decode ({e!r})"
            self.store.mark_dropped(row, shown[:ERROR_CHARS], self.clock())
            metrics.NOTIFICATIONS.labels(channel.name, metrics.FAILED).inc()
            _log.error("notification dropped: %s", shown)
            return None
        try:
            send(channel, event, self.notify.settings.timeout_seconds)
        except Exception as e:  # a bug in one send must not keep the rows after it unsent
            if not isinstance(e, InvsyncError):
                _log.exception("notification on %s crashed", channel.name)
            retry_at = self.clock() + self._backoff(row.attempts)
            shown = bounded(e, ERROR_CHARS)
            self.store.mark_failed(row, shown, retry_at, self.clock())
            metrics.NOTIFICATIONS.labels(channel.name, metrics.FAILED).inc()
            _log.warning("notification %s not sent (again at %s): %s", event.kind, retry_at, shown)
            return retry_at
        self.store.mark_sent(row, self.clock())
        metrics.NOTIFICATIONS.labels(channel.name, metrics.SENT).inc()
        return None

    def _backoff(self, attempts: int) -> timedelta:
        settings = self.notify.settings
        wait = settings.initial_backoff_seconds * 2 ** min(attempts, 30)
        return timedelta(seconds=min(wait, settings.max_backoff_seconds))


def _started(now: datetime, failed: int) -> str:
    """The run of failures this event is about: when it reached the threshold (a second run,
    after a success, is another event)."""
    return f"{rfc3339(now)}#{failed}"


@contextmanager
def _never_raises(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:  # a notification never stops a cycle; the traceback is logged for a fix
        _log.exception("%s failed; the cycle goes on", what)
