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
from invsync.agent.exchange.snapshot import decode_payload, to_chunks
from invsync.server.daemon import GRACE_SECONDS, SERVICE_NAME
from invsync.server.localfed import _await_port, command, server_process, stop, write_federation
from invsync.v1 import invsync_pb2 as pb
from tests.integration.test_retry import _pin_port, free_port

pytestmark = pytest.mark.integration
EXIT_SLACK = 25.0  # seconds


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


def _watch_health(work: Path, port: int, seen: list[int], ready: threading.Event) -> None:
    """Record every status the server's health Watch stream reports, until it ends."""
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
            for response in stub.Watch(request, timeout=GRACE_SECONDS + 10):
                seen.append(response.status)
                ready.set()
        except grpc.RpcError:
            pass  # the stream ends when the server stops


@pytest.mark.parametrize(
    ("after_sigterm", "committed"),
    [(1.0, True), (GRACE_SECONDS + 3.0, False)],
    ids=["finishes-within-grace", "aborted-after-grace"],
)
def test_sigterm_mid_push_drains_or_aborts_cleanly_and_the_next_start_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_sigterm: float, committed: bool
) -> None:
    write_federation(tmp_path)
    port = free_port()
    _pin_port(tmp_path, port)
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    agent.client.timeout = 60
    agent.client.retry = RetryPolicy(base=0.1, factor=2.0, cap=0.5, retries=2)
    agent.collect()
    pairing = agent.config.pairings["secom-jprs"]

    streaming, signalled = threading.Event(), threading.Event()

    def slow_chunks(env: Envelope, chunk_size: int = 0) -> Iterator[pb.SnapshotChunk]:
        chunks = list(to_chunks(env, chunk_size=1024))
        assert len(chunks) > 2
        yield chunks[0]
        streaming.set()
        signalled.wait(30)
        deadline = time.monotonic() + after_sigterm
        for chunk in chunks[1:]:  # the rest trickles in, the trailer last
            time.sleep(max(0.0, deadline - time.monotonic()) / len(chunks))
            yield chunk
        time.sleep(max(0.0, deadline - time.monotonic()))

    server = _start_server(tmp_path)
    try:
        health: list[int] = []
        watching = threading.Event()
        watcher = threading.Thread(target=_watch_health, args=(tmp_path, port, health, watching))
        watcher.start()
        assert watching.wait(10), "no health status before SIGTERM"
        sent_at: list[float] = []

        def terminate() -> None:
            if streaming.wait(30):
                server.send_signal(signal.SIGTERM)
                sent_at.append(time.monotonic())
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
        assert sent_at, "the push never started streaming"
        # Exit comes after the grace period at the latest; the slack beyond it only absorbs a
        # loaded machine's process teardown, it is not part of what is tested.
        code = server.wait(max(0.1, sent_at[0] + GRACE_SECONDS + EXIT_SLACK - time.monotonic()))
        assert code == 0
        watcher.join(10)
        assert health[0] == health_pb2.HealthCheckResponse.SERVING
        assert health_pb2.HealthCheckResponse.NOT_SERVING in health
    finally:
        stop(server)

    stored = _stored(tmp_path)
    if committed:
        assert pushed == 1
        assert [(v, r is not None) for v, _, r in stored] == [(1, True)]
    else:
        assert pushed is None
        assert stored == []  # nothing half-written
    # The channel's own reconnect backoff may still be running: retry for longer this time.
    agent.client.retry = RetryPolicy(base=0.5, factor=2.0, cap=2.0, retries=10)
    with server_process(tmp_path):
        assert agent.push(pairing) == 2
    after = _stored(tmp_path)
    assert [v for v, _, _ in after] == [1, 2]
    assert all(r is not None for _, _, r in after)
    assert (
        decode_payload(after[1][1]).header.previous_digest == hashlib.sha256(after[0][1]).digest()
    )
    agent.close()
