"""Keepalive notices a silent peer within keepalive_seconds + keepalive_timeout_seconds.

A real server process over mutual TLS; between it and the agent a loopback proxy that falls
silent mid-push (connections open, nothing forwarded), as a hung peer or a packet-dropping
firewall would. Each call's deadline is 60 s, so only keepalive can end it in time. Both
bounds come from the daemons' TOML files, as an operator would set them.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.client import Unreachable
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.snapshot import to_chunks
from invsync.server.daemon import SERVICE_NAME
from invsync.server.localfed import agent_config, server_process, write_federation
from invsync.v1 import invsync_pb2 as pb
from tests.integration.silent_proxy import SilentProxy

pytestmark = pytest.mark.integration

DEADLINE = 60  # seconds: far beyond every bound tested here
KEEPALIVE = 1  # seconds, on the side that must notice
KEEPALIVE_TIMEOUT = 1
BOUND = KEEPALIVE + KEEPALIVE_TIMEOUT
# Beyond the bound: thread wake-ups and timer granularity on a loaded 2-core machine. A
# keepalive that did not work would take the 60 s deadline (or the 30 s default bound).
SLACK = 3.0
PAIRING = "secom-jprs"


def _server_settings(work: Path, settings: str) -> None:
    config = work / "server.toml"
    config.write_text(config.read_text().replace("\n[tls]", f"{settings}\n\n[tls]"))


def _agent(work: Path, port: int, settings: str) -> Agent:
    """jprs's agent, connecting to `port`, one try per call, `settings` added to [agent]."""
    text = agent_config("jprs", port).replace(
        "\n[server]", f"rpc_timeout_seconds = {DEADLINE}\n{settings}\n[server]"
    )
    (work / "jprs.toml").write_text(text + "\n[retry]\nattempts = 1\n")
    agent = Agent(load_agent_config(work / "jprs.toml"))
    agent.collect()
    return agent


def _stored_versions(work: Path) -> list[int]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        return [int(v) for (v,) in db.execute("select version from snapshots")]


class StalledPush:
    """Chunks for a push that sends its first chunk and then waits, as a stalled upload does."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def chunks(self, env: Envelope, chunk_size: int = 0) -> Iterator[pb.SnapshotChunk]:
        first, *rest = list(to_chunks(env, chunk_size=1024))
        yield first
        self.started.set()
        self.release.wait(DEADLINE)
        yield from rest


def _push(agent: Agent) -> Exception | None:
    """Push jprs's next snapshot; the error that ended it, if any. (In the test's own thread:
    the agent's store belongs to the thread that opened it.)"""
    try:
        agent.push(agent.config.pairings[PAIRING])
    except Exception as e:  # the test asserts on it
        return e
    return None


def _in_background(work: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_an_agent_notices_a_server_gone_silent_mid_push_within_its_keepalive_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_federation(tmp_path)
    settings = f"keepalive_seconds = {KEEPALIVE}\nkeepalive_timeout_seconds = {KEEPALIVE_TIMEOUT}"
    # The server must let the agent ping every second, or it would refuse the pings instead.
    _server_settings(tmp_path, "min_client_keepalive_seconds = 1")
    with server_process(tmp_path) as port:
        proxy = SilentProxy(port)
        agent = _agent(tmp_path, proxy.port, settings)
        stalled = StalledPush()
        monkeypatch.setattr("invsync.agent.exchange.client.to_chunks", stalled.chunks)
        silent_from: list[float] = []

        def silence_once_streaming() -> None:
            if stalled.started.wait(30):
                silent_from.append(proxy.silence())

        silencer = _in_background(silence_once_streaming)
        try:
            error = _push(agent)
            noticed = time.monotonic() - silent_from[0] if silent_from else None
        finally:
            stalled.release.set()
            silencer.join(30)
            proxy.close()
            agent.close()
        assert _stored_versions(tmp_path) == []  # the broken push stored nothing
    assert noticed is not None, f"the push never streamed: {error}"
    print(f"agent noticed the silent server after {noticed:.2f} s (bound {BOUND} s)")
    assert noticed < BOUND + SLACK
    assert isinstance(error, Unreachable)
    assert re.fullmatch(
        rf"127\.0\.0\.1:{proxy.port}: unreachable since \S+Z \(1 attempts\); "
        r"last error: PushSnapshot: UNAVAILABLE: Stream removed \(ping timeout\)",
        str(error),
    ), str(error)


def test_the_server_drops_an_agent_gone_silent_mid_push_within_its_keepalive_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_federation(tmp_path)
    _server_settings(
        tmp_path,
        f"keepalive_seconds = {KEEPALIVE}\nkeepalive_timeout_seconds = {KEEPALIVE_TIMEOUT}",
    )
    with server_process(tmp_path) as port:
        proxy = SilentProxy(port)
        agent = _agent(tmp_path, proxy.port, "")  # the agent's own keepalive: the default 30 s
        stalled = StalledPush()
        monkeypatch.setattr("invsync.agent.exchange.client.to_chunks", stalled.chunks)
        silent_from: list[float] = []

        def silence_then_wait_for_the_server() -> None:
            if stalled.started.wait(30):
                silent_from.append(proxy.silence())
                proxy.server_hung_up.wait(BOUND + SLACK + 5)
            stalled.release.set()
            proxy.close()  # ends the agent's call, whose own keepalive would take 30 s

        watcher = _in_background(silence_then_wait_for_the_server)
        try:
            error = _push(agent)
        finally:
            stalled.release.set()
            watcher.join(30)
            proxy.close()
            agent.close()
        assert _stored_versions(tmp_path) == []  # the dropped push stored nothing
    assert silent_from, f"the push never streamed: {error}"
    assert proxy.server_hung_up.is_set(), "the server kept the silent agent's connection open"
    noticed = proxy.server_hung_up_at - silent_from[0]
    print(f"server dropped the silent agent after {noticed:.2f} s (bound {BOUND} s)")
    assert noticed < BOUND + SLACK
    assert isinstance(error, Unreachable)


def _watch_health(agent: Agent, seconds: float) -> grpc.RpcError:
    """Hold a quiet call open on the agent's own channel (the health Watch stream answers once,
    then says nothing) for `seconds`; returns the error that ends it."""
    stub = health_pb2_grpc.HealthStub(agent.client.channel)
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    with pytest.raises(grpc.RpcError) as caught:
        for _ in stub.Watch(request, timeout=seconds):
            pass
    return caught.value


QUIET_CALL = 4.0  # seconds: several of the agent's 1 s pings, answered by no data


@pytest.mark.parametrize(
    ("server_setting", "status", "details"),
    [
        ("min_client_keepalive_seconds = 1", grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline"),
        ("", grpc.StatusCode.UNAVAILABLE, "Too many pings"),  # the default minimum, 5 s
    ],
    ids=["permitted", "too-many-pings"],
)
def test_the_server_permits_agent_pings_down_to_min_client_keepalive_seconds(
    tmp_path: Path, server_setting: str, status: grpc.StatusCode, details: str
) -> None:
    write_federation(tmp_path)
    _server_settings(tmp_path, server_setting)
    with server_process(tmp_path) as port:
        agent = _agent(tmp_path, port, "keepalive_seconds = 1\nkeepalive_timeout_seconds = 1")
        try:
            started = time.monotonic()
            error = _watch_health(agent, QUIET_CALL)
            lasted = time.monotonic() - started
        finally:
            agent.close()
    assert isinstance(error, grpc.Call)
    assert (error.code(), details in (error.details() or "")) == (status, True), error.details()
    if status == grpc.StatusCode.UNAVAILABLE:
        assert lasted < QUIET_CALL  # refused pings end the call: it did not reach its deadline
