"""SIGTERM while a push streams in: NOT_SERVING, drain or abort without committing, exit 0."""

from __future__ import annotations

import hashlib
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import TransportError
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.snapshot import decode_header, to_chunks
from invsync.server.daemon import GRACE_SECONDS, SERVICE_NAME
from invsync.server.localfed import _await_port, command, server_process, stop, write_federation
from invsync.v1 import invsync_pb2 as pb
from tests.integration.test_retry import _pin_port, free_port

pytestmark = pytest.mark.integration
EXIT_SLACK = 25.0  # seconds
TRICKLE_SECONDS = 1.0  # how long the data after the first chunk takes, well within the grace
# Long enough never to end before the server cuts the stream at the end of its grace period.
WATCH_SECONDS = 120.0


def _start_server(work: Path) -> subprocess.Popen[bytes]:
    log = (work / "logs" / "server.log").open("ab")
    proc = subprocess.Popen(
        command("server", "run", "--config", str(work / "server.toml")),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    log.close()
    _await_port(proc, work)
    return proc


def _stored(work: Path) -> list[tuple[int, bytes, bytes | None]]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute(
            "select version, payload, receipt from snapshots where party = 'jprs' order by version"
        ).fetchall()
    return [(int(v), bytes(p), None if r is None else bytes(r)) for v, p, r in rows]


def _watch_health(
    work: Path, port: int, seen: list[int], ready: threading.Event, ended: list[grpc.StatusCode]
) -> None:
    """Record every status the server's health Watch stream reports, and how the stream ended.

    The server ends it only by cancelling the calls still in flight when its grace period is
    over, so its end tells the other threads that the grace is over.
    """
    tls = work / "tls"
    credentials = grpc.ssl_channel_credentials(
        (tls / "ca.pem").read_bytes(),
        (tls / "jprs.key").read_bytes(),
        (tls / "jprs.crt").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        try:
            for response in stub.Watch(request, timeout=WATCH_SECONDS):
                seen.append(response.status)
                ready.set()
        except grpc.RpcError as e:
            ended.append(e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN)


@pytest.mark.parametrize(
    ("trailer_after_grace", "open_after_grace"),
    [(False, False), (False, True), (True, True)],
    ids=["finishes-within-grace", "trailer-in-but-open-at-grace-end", "aborted-after-grace"],
)
def test_sigterm_mid_push_drains_or_aborts_cleanly_and_the_next_start_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    trailer_after_grace: bool,
    open_after_grace: bool,
) -> None:
    """A push under way at SIGTERM is committed, receipt and all, if it ends within the grace
    period, and not at all otherwise, even with every byte in but the stream not yet closed;
    health says NOT_SERVING meanwhile, the server exits 0, and the next start resumes."""
    committed = not open_after_grace
    write_federation(tmp_path)
    port = free_port()
    _pin_port(tmp_path, port)
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    agent.client.timeout = 60
    agent.client.retry = RetryPolicy(base=0.1, factor=2.0, cap=0.5, retries=2)
    agent.collect()
    pairing = agent.config.pairings["secom-jprs"]

    streaming, signalled, grace_over = threading.Event(), threading.Event(), threading.Event()

    def slow_chunks(env: Envelope, chunk_size: int = 0) -> Iterator[pb.SnapshotChunk]:
        *data, trailer = to_chunks(env, chunk_size=1024)
        assert len(data) > 2
        yield data[0]
        # gRPC asks for the next chunk only once this one is written: the call is under way.
        streaming.set()
        signalled.wait(30)
        started = time.monotonic()
        for n, chunk in enumerate(data[1:], start=1):
            # A slow sender, not synchronisation: the rest trickles in over TRICKLE_SECONDS.
            time.sleep(max(0.0, started + TRICKLE_SECONDS * n / (len(data) - 1) - time.monotonic()))
            yield chunk
        if trailer_after_grace:
            grace_over.wait(GRACE_SECONDS + EXIT_SLACK)
        yield trailer
        if open_after_grace:
            grace_over.wait(GRACE_SECONDS + EXIT_SLACK)

    server = _start_server(tmp_path)
    try:
        health: list[int] = []
        health_ended: list[grpc.StatusCode] = []
        watching = threading.Event()

        def watch() -> None:
            try:
                _watch_health(tmp_path, port, health, watching, health_ended)
            finally:
                grace_over.set()

        watcher = threading.Thread(target=watch)
        watcher.start()
        assert watching.wait(10), "no health status before SIGTERM"
        sent_at: list[float] = []

        def terminate() -> None:
            try:
                if not streaming.wait(30):
                    return
                # A round trip on the push's own connection, which the server reads in order:
                # once it is answered the server has taken the push call too, so the SIGTERM
                # comes mid-call instead of racing the call's arrival (a call not yet taken is
                # refused by a stopping server, and the push would fail without being drained).
                health_pb2_grpc.HealthStub(agent.client.channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10
                )
                server.send_signal(signal.SIGTERM)
                sent_at.append(time.monotonic())
            finally:
                signalled.set()

        killer = threading.Thread(target=terminate)
        killer.start()
        monkeypatch.setattr("invsync.agent.exchange.client.to_chunks", slow_chunks)
        try:
            pushed: int | None = agent.push(pairing)
        except TransportError:
            pushed = None
        monkeypatch.undo()
        killer.join(30)
        assert sent_at, "no SIGTERM was sent while the push streamed"
        # Exit comes after the grace period at the latest; the slack beyond it only absorbs a
        # loaded machine's process teardown, it is not part of what is tested.
        code = server.wait(max(0.1, sent_at[0] + GRACE_SECONDS + EXIT_SLACK - time.monotonic()))
        assert code == 0
        watcher.join(10)
        assert health[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in health
        # Ended by the server at the end of its grace period, not by the watch's own deadline:
        # otherwise `grace_over` was set too early and a late trailer was not late.
        assert health_ended and health_ended[0] != grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        stop(server)

    stored = _stored(tmp_path)
    if committed:
        assert pushed == 1
        assert [(v, r is not None) for v, _, r in stored] == [(1, True)]
    else:
        assert pushed is None
        assert stored == []  # nothing half-written
    # The next start's log replaces this one's, which is kept for whoever reads a failure.
    (tmp_path / "logs" / "server.log").rename(tmp_path / "logs" / "server-sigterm.log")
    # The channel's own reconnect backoff may still be running: retry for longer this time.
    agent.client.retry = RetryPolicy(base=0.5, factor=2.0, cap=2.0, retries=10)
    with server_process(tmp_path):
        assert agent.push(pairing) == 2
    after = _stored(tmp_path)
    assert [v for v, _, _ in after] == [1, 2]
    assert all(r is not None for _, _, r in after)
    assert decode_header(after[1][1]).previous_digest == hashlib.sha256(after[0][1]).digest()
    agent.close()
