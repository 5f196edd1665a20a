"""Resource limits on calls (issue 12): push streams per party, an idle timeout and a minimum
average rate per push stream, a budget of bytes held by all pushes under way, and a cap on any
call's total time.

One watchdog thread, asleep between checks a few times a second, cancels the calls past a limit;
no thread waits on a call of its own. A cancelled push's handler finds its request stream ended
and refuses it as `stream-too-slow` (the client sees CANCELLED: gRPC sends no status after a
cancel). gRPC itself sheds calls past `max_concurrent_rpcs` (see daemon.start).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from invsync.agent.exchange.rejections import ServerBusy, StreamTooSlow, TooManyStreams
from invsync.server import metrics
from invsync.server.config import Limits
from invsync.v1 import invsync_pb2 as pb

TICK_SECONDS = 0.25
log = logging.getLogger("invsync.server")


@dataclass(eq=False)
class Watch:
    """One call under the watchdog; `idle` and `min_rate` are set for push streams only, until
    the stream's last chunk is in (what follows, accepting it, has only the total-time cap)."""

    context: grpc.ServicerContext
    party: str
    idle: float | None
    min_rate: int = 0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    received: int = 0  # payload bytes, also what the stream holds of the in-flight budget
    window_start: float = field(default_factory=time.monotonic)
    window_bytes: int = 0  # payload bytes since window_start
    reason: str = ""

    def overdue(self, now: float, cap: float) -> str:
        """Why the call must be cancelled now ("": it may go on). Called under the limiter's
        lock: it closes the rate window it judged."""
        if self.idle is not None:
            if now - self.last > self.idle:
                return f"no chunk for {self.idle:.0f} s"
            if slow := self._below_rate(now, self.idle):
                return slow
        if now - self.started > cap:
            return f"call still running after {cap:.0f} s"
        return ""

    def _below_rate(self, now: float, span: float) -> str:
        # Judged over windows of the idle timeout's span, not since the start: a stream that
        # sends a burst and then a byte every few seconds is never idle, and its average would
        # stay above any minimum until the total-time cap.
        elapsed = now - self.window_start
        if elapsed <= span:
            return ""
        rate = self.window_bytes / elapsed
        self.window_start, self.window_bytes = now, 0
        if rate >= self.min_rate:
            return ""
        return (
            f"{rate:.0f} bytes/s over the last {elapsed:.0f} s, below "
            f"server.stream_min_bytes_per_second ({self.min_rate})"
        )


class Limiter:
    def __init__(self, limits: Limits, parties: Iterable[str] = ()) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._held = 0  # payload bytes all push streams hold now
        self._held_by: dict[str, int] = {}  # the same, by party
        self._watches: set[Watch] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invsync-watchdog", daemon=True)
        metrics.MAX_CONCURRENT_RPCS.set(limits.max_concurrent_rpcs)
        metrics.MAX_INFLIGHT_BYTES.set(limits.max_inflight_bytes)
        metrics.INFLIGHT_BYTES.set(0)
        self.count(parties)

    def count(self, parties: Iterable[str]) -> None:
        """Every configured party's series, from 0 (a party added by a reload too)."""
        for party in parties:
            with self._lock:
                metrics.PUSH_STREAMS_OPEN.labels(party).set(self._open.get(party, 0))
            for rule in (TooManyStreams.rule, StreamTooSlow.rule, ServerBusy.rule):
                metrics.CALLS_LIMITED.labels(party, rule)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @contextmanager
    def call(self, context: grpc.ServicerContext) -> Iterator[Watch]:
        """Any Exchange call: counted in flight, cancelled past the total-time cap."""
        with self._watched(Watch(context, metrics.UNKNOWN, None)) as watch:
            yield watch

    @contextmanager
    def push(self, party: str | None, context: grpc.ServicerContext) -> Iterator[Watch]:
        """A push stream of `party`: refused past the per-party bound, cancelled when idle."""
        name = party or metrics.UNKNOWN
        with self._lock:
            if self._open.get(name, 0) >= self.limits.max_streams_per_party:
                metrics.CALLS_LIMITED.labels(name, TooManyStreams.rule).inc()
                raise TooManyStreams(
                    f"party {name} already has {self.limits.max_streams_per_party} push "
                    "streams open (server.max_streams_per_party)"
                )
            self._open[name] = self._open.get(name, 0) + 1
            metrics.PUSH_STREAMS_OPEN.labels(name).set(self._open[name])
        limits = self.limits
        watch = Watch(context, name, limits.stream_idle_seconds, limits.stream_min_bytes_per_second)
        try:
            with self._watched(watch):
                yield watch
        finally:
            with self._lock:
                self._open[name] -= 1
                self._held -= watch.received
                self._held_by[name] = self._held_by.get(name, 0) - watch.received
                metrics.PUSH_STREAMS_OPEN.labels(name).set(self._open[name])
                metrics.INFLIGHT_BYTES.set(self._held)

    def chunks(
        self, watch: Watch, chunks: Iterable[pb.SnapshotChunk]
    ) -> Iterator[pb.SnapshotChunk]:
        """`chunks`, each arrival noted and its data charged to the in-flight budget before the
        caller buffers it; a stream the watchdog cancelled ends in StreamTooSlow."""
        try:
            for chunk in chunks:
                watch.last = time.monotonic()
                self._charge(watch, len(chunk.data))
                yield chunk
            watch.idle = None  # every chunk is in: accepting it is the server's time, not theirs
        except grpc.RpcError as e:
            if watch.reason:
                raise StreamTooSlow(f"push by {watch.party} cancelled: {watch.reason}") from e
            raise
        if watch.reason:
            raise StreamTooSlow(f"push by {watch.party} cancelled: {watch.reason}")

    def _charge(self, watch: Watch, size: int) -> None:
        """Hold `size` more bytes for the stream, or refuse it when the budget, or the party's
        share of it, has no room: the bytes stay held until the push's block ends (they are the
        payload being accepted)."""
        with self._lock:
            held = self._held_by.get(watch.party, 0)
            why = self._no_room(watch.party, held, size)
            if why:
                metrics.CALLS_LIMITED.labels(watch.party, ServerBusy.rule).inc()
                raise ServerBusy(why)
            self._held += size
            self._held_by[watch.party] = held + size
            watch.received += size
            watch.window_bytes += size
            metrics.INFLIGHT_BYTES.set(self._held)

    def _no_room(self, party: str, held: int, size: int) -> str:
        budget, share = self.limits.max_inflight_bytes, self.limits.party_share
        if held + size > share:
            return (
                f"{party}'s pushes under way hold {held} bytes; {size} more would pass its "
                f"share of server.max_inflight_bytes ({share})"
            )
        if self._held + size > budget:
            return (
                f"pushes under way hold {self._held} bytes; {size} more from {party} would "
                f"pass server.max_inflight_bytes ({budget})"
            )
        return ""

    @contextmanager
    def _watched(self, watch: Watch) -> Iterator[Watch]:
        with self._lock:
            self._watches.add(watch)
        metrics.RPCS_IN_FLIGHT.inc()
        try:
            yield watch
        finally:
            metrics.RPCS_IN_FLIGHT.dec()
            with self._lock:
                self._watches.discard(watch)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            now = time.monotonic()
            with self._lock:
                cap = self.limits.max_request_seconds
                due = [(w, w.overdue(now, cap)) for w in self._watches if not w.reason]
            for watch, reason in due:
                if reason:
                    watch.reason = reason
                    metrics.CALLS_LIMITED.labels(watch.party, StreamTooSlow.rule).inc()
                    log.warning("cancelling a call of %s: %s", watch.party, reason)
                    watch.context.cancel()  # type: ignore[no-untyped-call]
