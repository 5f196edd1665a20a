"""Issue 12: one party cannot stall the exchange. Real slow and concurrent streams over mutual
TLS on loopback against a real server process, started with a 3-second idle timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from invsync.agent.exchange.rejections import RULE_METADATA_KEY
from invsync.server.localfed import PARTIES, agent_config, server_process, write_federation
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation, make_agent, pairing_of, wait_for

IDLE_SECONDS = 3
FLOOD = 8 + 1  # the worker count issue 12 was stalled by, plus one
PER_PARTY = 4  # the default max_streams_per_party


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    write_federation(tmp_path)
    toml = tmp_path / "server.toml"
    toml.write_text(
        toml.read_text().replace("[server]\n", f"[server]\nstream_idle_seconds = {IDLE_SECONDS}\n")
    )
    with server_process(tmp_path) as port:
        for party in PARTIES:
            (tmp_path / f"{party}.toml").write_text(agent_config(party, port))
        yield Federation(tmp_path, port)


def _stub(fed: Federation, party: str) -> tuple[grpc.Channel, pb_grpc.ExchangeStub]:
    tls = fed.work / "tls"
    creds = grpc.ssl_channel_credentials(
        (tls / "ca.pem").read_bytes(),
        (tls / f"{party}.key").read_bytes(),
        (tls / f"{party}.crt").read_bytes(),
    )
    channel = grpc.secure_channel(fed.address, creds)
    return channel, pb_grpc.ExchangeStub(channel)


def _slow(stop: threading.Event, every: float) -> Iterator[pb.SnapshotChunk]:
    """One byte per `every` seconds until `stop` (at most 15 s): a stream that never ends."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        yield pb.SnapshotChunk(data=b"x")
        if stop.wait(every):
            return


def _rule(error: object) -> str:
    assert isinstance(error, grpc.Call)
    return str(dict(error.trailing_metadata() or ()).get(RULE_METADATA_KEY, ""))


def test_a_slow_flood_by_one_party_leaves_the_other_partys_push_accepted(
    fed: Federation,
) -> None:
    stop = threading.Event()
    channel, stub = _stub(fed, "secom")
    calls = [stub.PushSnapshot.future(_slow(stop, 0.5), timeout=20) for _ in range(FLOOD)]
    try:
        deadline = time.monotonic() + 10
        while sum(c.done() for c in calls) < FLOOD - PER_PARTY and time.monotonic() < deadline:
            time.sleep(0.1)
        refused = [c.exception() for c in calls if c.done()]
        assert len(refused) == FLOOD - PER_PARTY
        for error in refused:
            assert isinstance(error, grpc.Call)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert _rule(error) == "too-many-streams"
        # The flood is still open; the other party's honest push goes through.
        agent = make_agent(fed, "jprs")
        try:
            agent.collect()
            started = time.monotonic()
            agent.push(pairing_of(agent))
            assert time.monotonic() - started < 10
        finally:
            agent.close()
        assert sum(c.done() for c in calls) == FLOOD - PER_PARTY  # still streaming
    finally:
        stop.set()
        for call in calls:
            call.cancel()  # type: ignore[no-untyped-call]
        channel.close()


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
