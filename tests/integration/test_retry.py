"""The agent's client retries a server that is down, never a refusal, and says since when."""

from __future__ import annotations

import random
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import TransportError
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.client import ExchangeClient, Unreachable
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.server.localfed import agent_config, server_process, write_federation
from tests.integration.conftest import Federation
from tests.integration.ports import free_port as free_port  # test_sigterm imports it from here
from tests.integration.test_exchange import _signed, _snapshot_of

pytestmark = pytest.mark.integration

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _endpoint(work: Path, party: str, address: str) -> ServerEndpoint:
    tls = work / "tls"
    return ServerEndpoint(
        address=address,
        ca=tls / "ca.pem",
        cert=tls / f"{party}.crt",
        key=tls / f"{party}.key",
        signing_keys=(work / "keys" / "server.pub",),
    )


def test_a_closed_port_is_retried_with_backoff_then_reported_unreachable(tmp_path: Path) -> None:
    write_federation(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    slept: list[float] = []
    policy = RetryPolicy(base=0.2, factor=2.0, cap=1.0, retries=3)
    client = ExchangeClient(
        _endpoint(tmp_path, "jprs", address),
        timeout=5,
        retry=policy,
        sleep=slept.append,
        rng=random.Random(3),
        clock=lambda: AT,
    )
    with pytest.raises(Unreachable) as caught:
        client.report("secom-jprs")
    client.close()
    assert str(caught.value).startswith(
        f"{address}: unreachable since 2026-01-02T03:04:05Z (4 attempts)"
    )
    assert re.search(r"last error: GetReport: UNAVAILABLE", str(caught.value))
    assert slept == policy.delays(random.Random(3))


def test_a_refusal_is_never_retried(federation: Federation) -> None:
    slept: list[float] = []
    client = ExchangeClient(
        _endpoint(federation.work, "jprs", federation.address), timeout=5, sleep=slept.append
    )
    env = _signed(federation, "jprs", _snapshot_of(federation, "secom", "root"))
    with pytest.raises(TransportError, match="PERMISSION_DENIED") as caught:
        client.push(env)
    client.close()
    assert not isinstance(caught.value, Unreachable)
    assert caught.value.rule == "party-mismatch"  # from the trailing metadata
    assert slept == []


def _pin_port(work: Path, port: int) -> None:
    config = work / "server.toml"
    config.write_text(config.read_text().replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"'))
    for party in ("secom", "jprs"):
        (work / f"{party}.toml").write_text(agent_config(party, port))


def _stored(work: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(work / "state" / "server.db") as db:
        return [(str(p), int(v)) for p, v in db.execute("select party, version from snapshots")]


def test_a_push_while_the_server_is_down_succeeds_once_it_starts(tmp_path: Path) -> None:
    write_federation(tmp_path)
    port = free_port()
    _pin_port(tmp_path, port)
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    attempts: list[float] = []
    agent.client.retry = RetryPolicy(base=0.5, factor=1.5, cap=1.0, retries=30)

    def sleep(seconds: float) -> None:
        attempts.append(seconds)
        time.sleep(seconds)

    agent.client.sleep = sleep
    agent.collect()
    up, done = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def serve_later() -> None:
        try:
            time.sleep(2.0)  # the agent's cycle starts against a closed port
            with server_process(tmp_path):
                up.set()
                done.wait(60)
        except BaseException as e:  # reported by the assertions below
            failed.append(e)

    server = threading.Thread(target=serve_later)
    server.start()
    try:
        version = agent.push(agent.config.pairings["secom-jprs"])
        assert up.is_set() and failed == []
        assert version == 1
        assert len(attempts) >= 2  # it did retry while the server was down
        assert _stored(tmp_path) == [("jprs", 1)]  # stored once, nothing lost
        sent = agent.store.latest_sent_snapshot("secom-jprs")
        assert sent is not None and sent.version == 1
    finally:
        done.set()
        server.join(60)
        agent.close()


def test_a_peer_that_stays_down_leaves_the_agents_state_unchanged(tmp_path: Path) -> None:
    write_federation(tmp_path)
    _pin_port(tmp_path, free_port())
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    agent.client.retry = RetryPolicy(base=0.01, factor=2.0, cap=0.05, retries=2)
    agent.collect()
    with pytest.raises(Unreachable, match=r"unreachable since \S+Z \(3 attempts\)"):
        agent.push(agent.config.pairings["secom-jprs"])
    assert agent.store.latest_sent_snapshot("secom-jprs") is None
    agent.close()


@pytest.mark.parametrize("attempts", [1, 3])
def test_the_configured_retry_table_sets_how_often_the_agent_tries(
    tmp_path: Path, attempts: int
) -> None:
    write_federation(tmp_path)
    port = free_port()
    retry = f"initial_backoff_seconds = 0.01\nmax_backoff_seconds = 0.05\nattempts = {attempts}"
    (tmp_path / "jprs.toml").write_text(f"{agent_config('jprs', port)}\n[retry]\n{retry}\n")
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    agent.collect()
    try:
        with pytest.raises(Unreachable) as caught:
            agent.push(agent.config.pairings["secom-jprs"])
    finally:
        agent.close()
    assert re.fullmatch(
        rf"127\.0\.0\.1:{port}: unreachable since \S+Z \({attempts} attempts\); "
        r"last error: PushSnapshot: UNAVAILABLE: .*",
        str(caught.value),
        flags=re.DOTALL,
    )
