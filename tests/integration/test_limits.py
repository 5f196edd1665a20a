"""Issue 12: one party cannot stall the exchange. Real slow and concurrent streams over mutual
TLS on loopback against a real server process, started with a 3-second idle timeout (and, per
test, other limits lowered to what a test can reach)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias, cast

import grpc
import pytest

from invsync.agent.exchange.rejections import RULE_METADATA_KEY
from invsync.server.config import Limits
from invsync.server.localfed import PARTIES, agent_config, server_process, write_federation
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation, make_agent, pairing_of, wait_for

Calls: TypeAlias = "grpc.Future[pb.Receipt]"
IDLE_SECONDS = 3
FLOOD = Limits().workers + 1  # the default worker count, plus one
PER_PARTY = Limits().max_streams_per_party


@contextmanager
def _federation(work: Path, **settings: int) -> Iterator[Federation]:
    """The demo federation with a real server process, `settings` added to its [server] table."""
    write_federation(work)
    lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
    toml = work / "server.toml"
    toml.write_text(toml.read_text().replace("[server]\n", f"[server]\n{lines}", 1))
    with server_process(work) as port:
        for party in PARTIES:
            (work / f"{party}.toml").write_text(agent_config(party, port))
        yield Federation(work, port)


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    with _federation(tmp_path, stream_idle_seconds=IDLE_SECONDS) as federation:
        yield federation


def _stub(fed: Federation, party: str) -> tuple[grpc.Channel, pb_grpc.ExchangeStub]:
    tls = fed.work / "tls"
    creds = grpc.ssl_channel_credentials(
        (tls / "ca.pem").read_bytes(),
        (tls / f"{party}.key").read_bytes(),
        (tls / f"{party}.crt").read_bytes(),
    )
    channel = grpc.secure_channel(fed.address, creds)
    return channel, pb_grpc.ExchangeStub(channel)


def _slow(
    stop: threading.Event, every: float, size: int = 1, first: int = 0
) -> Iterator[pb.SnapshotChunk]:
    """`first` bytes at once, then `size` bytes per `every` seconds until `stop` (at most 15 s):
    a stream that never ends."""
    if first:
        yield pb.SnapshotChunk(data=b"x" * first)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        yield pb.SnapshotChunk(data=b"x" * size)
        if stop.wait(every):
            return


def _wait_done(calls: Sequence[Calls], count: int, seconds: float) -> list[grpc.Call]:
    """The errors of the calls done, once `count` are (or `seconds` passed)."""
    deadline = time.monotonic() + seconds
    while sum(c.done() for c in calls) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    errors = [c.exception() for c in calls if c.done()]
    assert all(isinstance(e, grpc.Call) for e in errors)  # every call that ended, failed
    return [cast(grpc.Call, e) for e in errors]


def _honest_push(fed: Federation, party: str = "jprs") -> None:
    agent = make_agent(fed, party)
    try:
        agent.collect()
        started = time.monotonic()
        agent.push(pairing_of(agent))
        assert time.monotonic() - started < 10
    finally:
        agent.close()


def _end(stop: threading.Event, calls: Sequence[Calls], channel: grpc.Channel) -> None:
    stop.set()
    for call in calls:
        call.cancel()
    channel.close()


def _rule(error: object) -> str:
    assert isinstance(error, grpc.Call)
    return str(dict(error.trailing_metadata() or ()).get(RULE_METADATA_KEY, ""))


def test_a_slow_flood_of_the_worker_count_plus_one_leaves_the_other_partys_push_accepted(
    fed: Federation,
) -> None:
    """At the default limits: the flood holds only its party's streams, never the workers."""
    stop = threading.Event()
    channel, stub = _stub(fed, "secom")
    calls = [stub.PushSnapshot.future(_slow(stop, 0.5), timeout=20) for _ in range(FLOOD)]
    try:
        refused = _wait_done(calls, FLOOD - PER_PARTY, 15)
        assert len(refused) == FLOOD - PER_PARTY
        for error in refused:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _rule(error) == "too-many-streams"
        # The flood is still open; the other party's honest push goes through.
        _honest_push(fed)
        assert sum(c.done() for c in calls) == FLOOD - PER_PARTY  # still streaming
    finally:
        _end(stop, calls, channel)


def test_calls_past_max_concurrent_rpcs_are_shed_by_grpc(tmp_path: Path) -> None:
    """With the per-party bound lifted, the global one still holds: the excess is shed at once."""
    with _federation(tmp_path, max_concurrent_rpcs=6, max_streams_per_party=100) as fed:
        stop = threading.Event()
        channel, stub = _stub(fed, "secom")
        calls = [stub.PushSnapshot.future(_slow(stop, 0.5), timeout=20) for _ in range(7)]
        try:
            (shed,) = _wait_done(calls, 1, 10)
            assert shed.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _rule(shed) == ""  # gRPC's own refusal, before any handler ran
            time.sleep(1)
            assert sum(c.done() for c in calls) == 1
        finally:
            _end(stop, calls, channel)


def test_a_push_past_the_inflight_budget_is_refused_and_an_honest_one_accepted(
    tmp_path: Path,
) -> None:
    """Two of one party's pushes would hold 1.6 MB of a 1.5 MiB budget, more than the party's
    share (the budget less the largest snapshot, or that snapshot: 1 MiB): the second is refused
    while it streams; the other party's push still fits."""
    budget = {"max_snapshot_bytes": 1 << 20, "max_inflight_bytes": 3 << 19}
    with _federation(tmp_path, **budget) as fed:
        stop = threading.Event()
        channel, stub = _stub(fed, "secom")
        holding = stub.PushSnapshot.future(_slow(stop, 0.5, first=1_000_000), timeout=20)
        calls = [holding]
        try:
            time.sleep(1)  # the first push's megabyte is in
            calls.append(stub.PushSnapshot.future(_slow(stop, 0.5, first=600_000), timeout=20))
            (refused,) = _wait_done(calls, 1, 10)
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _rule(refused) == "server-busy"
            assert "would pass its share of server.max_inflight_bytes (1048576)" in (
                refused.details() or ""
            )
            _honest_push(fed)
            assert not holding.done()
        finally:
            _end(stop, calls, channel)


def test_a_trickling_push_is_cancelled_below_the_minimum_rate(fed: Federation) -> None:
    """A chunk every half second is never idle; 100 bytes/s is below the 1024 default."""
    stop = threading.Event()
    channel, stub = _stub(fed, "secom")
    started = time.monotonic()
    call = stub.PushSnapshot.future(_slow(stop, 0.5, size=50), timeout=20)
    try:
        (error,) = _wait_done([call], 1, IDLE_SECONDS + 8)
        assert error.code() == grpc.StatusCode.CANCELLED
        assert IDLE_SECONDS <= time.monotonic() - started < IDLE_SECONDS + 5
        wait_for(
            fed.work / "logs" / "server.log",
            "below server.stream_min_bytes_per_second (1024)",
            5,
        )
    finally:
        _end(stop, [call], channel)


def test_a_stalled_push_is_cancelled_by_the_idle_timeout(fed: Federation) -> None:
    stop = threading.Event()
    channel, stub = _stub(fed, "secom")
    try:
        started = time.monotonic()
        call = stub.PushSnapshot.future(_slow(stop, 30), timeout=20)
        deadline = time.monotonic() + IDLE_SECONDS + 8
        while not call.done() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert call.done()
        error = call.exception()
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.CANCELLED
        assert IDLE_SECONDS <= time.monotonic() - started < IDLE_SECONDS + 5
        wait_for(fed.work / "logs" / "server.log", f"no chunk for {IDLE_SECONDS} s", 5)
    finally:
        stop.set()
        channel.close()


def test_a_steady_push_is_cancelled_at_the_total_time_cap(tmp_path: Path) -> None:
    """Never idle, above the minimum rate, and still stopped once it has run too long."""
    with _federation(tmp_path, max_request_seconds=IDLE_SECONDS) as fed:
        stop = threading.Event()
        channel, stub = _stub(fed, "secom")
        started = time.monotonic()
        call = stub.PushSnapshot.future(_slow(stop, 0.2, size=2048), timeout=20)
        try:
            (error,) = _wait_done([call], 1, IDLE_SECONDS + 8)
            assert error.code() == grpc.StatusCode.CANCELLED
            assert IDLE_SECONDS <= time.monotonic() - started < IDLE_SECONDS + 5
            wait_for(
                fed.work / "logs" / "server.log", f"call still running after {IDLE_SECONDS} s", 5
            )
        finally:
            _end(stop, [call], channel)
