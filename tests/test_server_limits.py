"""The server's resource limits as logic (issue 12): the in-flight byte budget, the minimum
average rate, the idle timeout and the watchdog's lifetime. The same limits against a real server
process and real slow clients are in tests/integration/test_limits.py."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from typing import cast

import grpc
import pytest

from invsync.agent.exchange.rejections import IncompleteStream, ServerBusy
from invsync.agent.exchange.snapshot import from_chunks
from invsync.server import metrics
from invsync.server.config import Limits
from invsync.server.limits import Limiter, Watch
from invsync.v1 import invsync_pb2 as pb


class Context:
    """The one thing the limiter asks of a gRPC context: to cancel it."""

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _context() -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, Context())


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _data(*sizes: int) -> list[pb.SnapshotChunk]:
    return [pb.SnapshotChunk(data=b"x" * n) for n in sizes]


def test_the_budget_refuses_the_chunk_that_would_pass_it_and_frees_a_finished_push() -> None:
    limiter = Limiter(Limits(max_inflight_bytes=100))
    with limiter.push("secom", _context()) as first:
        assert len(list(limiter.chunks(first, _data(60)))) == 1
        assert _sample("invsync_inflight_push_bytes") == 60
        with limiter.push("jprs", _context()) as second:
            chunks = limiter.chunks(second, _data(30, 20))
            next(chunks)
            with pytest.raises(ServerBusy) as refused:
                next(chunks)
    assert str(refused.value) == (
        "pushes under way hold 90 bytes; 20 more from jprs would pass "
        "server.max_inflight_bytes (100)"
    )
    assert _sample("invsync_inflight_push_bytes") == 0
    with limiter.push("jprs", _context()) as third:
        assert len(list(limiter.chunks(third, _data(100)))) == 1


def test_a_refused_push_is_counted_under_its_rule() -> None:
    labels = {"party": "secom", "rule": "server-busy"}
    before = _sample("invsync_calls_limited_total", labels)
    limiter = Limiter(Limits(max_inflight_bytes=10))
    with pytest.raises(ServerBusy), limiter.push("secom", _context()) as watch:
        list(limiter.chunks(watch, _data(11)))
    assert _sample("invsync_calls_limited_total", labels) == before + 1


def _watch(sent: int, since: float, last: float) -> Watch:
    """A push stream that sent `sent` bytes since `since` (its rate window's start)."""
    context = _context()
    return Watch(context, "secom", 30, 1024, 0, last, sent, since, sent)


def test_a_stream_under_the_minimum_rate_is_overdue_once_its_window_is_past() -> None:
    # 20 000 bytes in 40 s is 500 bytes/s, though a chunk came a second ago.
    assert _watch(20_000, since=0, last=39).overdue(40, cap=600) == (
        "500 bytes/s over the last 40 s, below server.stream_min_bytes_per_second (1024)"
    )


def test_a_burst_does_not_pay_for_a_trickle_after_it() -> None:
    """The rate is judged per window: a first window far above the minimum, then a byte every
    few seconds, is cancelled at the end of the second window."""
    watch = _watch(10_000_000, since=0, last=30)
    assert watch.overdue(31, cap=600) == ""  # the first window closes, well above the rate
    watch.window_bytes += 10
    watch.last = 60
    assert watch.overdue(62, cap=600) == (
        "0 bytes/s over the last 31 s, below server.stream_min_bytes_per_second (1024)"
    )


def test_a_slow_start_is_not_judged_within_its_first_window() -> None:
    assert _watch(10, since=0, last=29).overdue(29.5, cap=600) == ""


def test_a_stream_at_the_minimum_rate_is_not_overdue() -> None:
    assert _watch(1024 * 40, since=0, last=39).overdue(40, cap=600) == ""


def test_a_zero_minimum_rate_never_cancels() -> None:
    watch = Watch(_context(), "secom", idle=30, min_rate=0, started=0, last=99, window_start=0)
    assert watch.overdue(100, cap=600) == ""


def test_idle_and_the_total_cap_still_apply() -> None:
    assert _watch(10**9, since=0, last=0).overdue(31, cap=600) == "no chunk for 30 s"
    assert _watch(10**9, since=599, last=600).overdue(601, cap=600) == (
        "call still running after 600 s"
    )


def test_once_every_chunk_is_in_only_the_total_cap_applies() -> None:
    """Accepting a push may take the server long; that is not the sender's slowness."""
    limiter = Limiter(Limits())
    with limiter.push("secom", _context()) as watch:
        list(limiter.chunks(watch, _data(10)))
        assert watch.overdue(watch.started + 100, cap=600) == ""


def test_one_party_holds_at_most_its_share_of_the_budget() -> None:
    """The budget less the largest snapshot: another party's largest push always fits."""
    limits = Limits(max_inflight_bytes=300, max_snapshot_bytes=100)
    limiter = Limiter(limits)
    with limiter.push("secom", _context()) as first, limiter.push("secom", _context()) as second:
        list(limiter.chunks(first, _data(100)))
        list(limiter.chunks(second, _data(100)))
        with limiter.push("secom", _context()) as third, pytest.raises(ServerBusy) as refused:
            list(limiter.chunks(third, _data(1)))
        with limiter.push("jprs", _context()) as other:
            assert len(list(limiter.chunks(other, _data(100)))) == 1
    assert str(refused.value) == (
        "secom's pushes under way hold 200 bytes; 1 more would pass its share of "
        "server.max_inflight_bytes (200)"
    )


def test_stop_ends_the_watchdog_thread() -> None:
    limiter = Limiter(Limits())
    limiter.start()
    limiter.stop()
    assert not limiter._thread.is_alive()


def _stream(total: int, chunk: int) -> Iterator[pb.SnapshotChunk]:
    payload_hash = hashlib.sha256()
    for _ in range(total // chunk):
        data = b"\x01" * chunk
        payload_hash.update(data)
        yield pb.SnapshotChunk(data=data)
    trailer = pb.SnapshotTrailer(total_length=total, payload_sha256=payload_hash.digest())
    yield pb.SnapshotChunk(trailer=trailer)


def test_reassembly_holds_the_payload_once() -> None:
    """No second copy at the trailer: the peak is the payload plus about a chunk, not twice it."""
    total = 32 << 20
    tracemalloc.start()
    try:
        env = from_chunks(_stream(total, 1 << 20), max_bytes=total)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(env.payload) == total
    assert peak < total * 1.2


def test_an_empty_data_chunk_ends_the_stream() -> None:
    """It would cost nothing against the budget and still keep an idle stream alive."""
    with pytest.raises(IncompleteStream) as refused:
        from_chunks([pb.SnapshotChunk(data=b"x"), pb.SnapshotChunk(data=b"")], max_bytes=10)
    assert str(refused.value) == "snapshot rejected [incomplete-stream]: chunk 1 carries no data"
