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
    """One call under the watchdog; `idle` and `min_rate` are set for push streams only."""

    context: grpc.ServicerContext
    party: str
    idle: float | None
    min_rate: int = 0
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    received: int = 0  # payload bytes, also what the stream holds of the in-flight budget
    reason: str = ""

    def overdue(self, now: float, cap: float) -> str:
        if self.idle is not None:
            if now - self.last > self.idle:
                return f"no chunk for {self.idle:.0f} s"
            # Past the idle timeout's span, a stream must also keep an average rate: one byte
            # every few seconds is never idle, but would hold its slot for the whole cap.
            elapsed = now - self.started
            if elapsed > self.idle and self.received < self.min_rate * elapsed:
                return (
                    f"{self.received / elapsed:.0f} bytes/s over {elapsed:.0f} s, below "
                    f"server.stream_min_bytes_per_second ({self.min_rate})"
                )
        if now - self.started > cap:
            return f"call still running after {cap:.0f} s"
        return ""


class Limiter:
    def __init__(self, limits: Limits, parties: Iterable[str] = ()) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._held = 0  # payload bytes all push streams hold now
        self._watches: set[Watch] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invsync-watchdog", daemon=True)
        metrics.MAX_CONCURRENT_RPCS.set(limits.max_concurrent_rpcs)
        metrics.MAX_INFLIGHT_BYTES.set(limits.max_inflight_bytes)
        metrics.INFLIGHT_BYTES.set(0)
        for party in parties:  # every configured party's series, from 0
            metrics.PUSH_STREAMS_OPEN.labels(party).set(0)
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
        except grpc.RpcError as e:
            if watch.reason:
                raise StreamTooSlow(f"push by {watch.party} cancelled: {watch.reason}") from e
            raise
        if watch.reason:
            raise StreamTooSlow(f"push by {watch.party} cancelled: {watch.reason}")

    def _charge(self, watch: Watch, size: int) -> None:
        """Hold `size` more bytes for the stream, or refuse it when the budget has no room: the
        bytes stay held until the push's block ends (they are the payload being accepted)."""
        with self._lock:
            if self._held + size > self.limits.max_inflight_bytes:
                metrics.CALLS_LIMITED.labels(watch.party, ServerBusy.rule).inc()
                raise ServerBusy(
                    f"pushes under way hold {self._held} bytes; {size} more from {watch.party} "
                    f"would pass server.max_inflight_bytes ({self.limits.max_inflight_bytes})"
                )
            self._held += size
            watch.received += size
            metrics.INFLIGHT_BYTES.set(self._held)

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
                due = [w for w in self._watches if not w.reason]
            for watch in due:
                reason = watch.overdue(now, self.limits.max_request_seconds)
                if reason:
                    watch.reason = reason
                    metrics.CALLS_LIMITED.labels(watch.party, StreamTooSlow.rule).inc()
                    log.warning("cancelling a call of %s: %s", watch.party, reason)
                    watch.context.cancel()  # type: ignore[no-untyped-call]
