"""Keepalive settings become gRPC channel options, and an agent's client gets its configuration's.

The bound itself is checked against a real server that goes silent in
tests/integration/test_keepalive.py; these tests pin the mapping from seconds to options.
"""

from __future__ import annotations

from pathlib import Path

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.keepalive import Keepalive, client_options, server_options
from invsync.server.localfed import agent_config, write_federation


def test_the_client_pings_with_a_ping_timeout_and_keeps_pinging_through_quiet_calls() -> None:
    assert dict(client_options(Keepalive(seconds=3, timeout_seconds=2))) == {
        "grpc.keepalive_time_ms": 3000,
        "grpc.keepalive_timeout_ms": 2000,
        "grpc.http2.ping_timeout_ms": 2000,
        "grpc.http2.max_pings_without_data": 0,
    }


def test_the_server_pings_and_permits_clients_pings_down_to_the_minimum() -> None:
    assert dict(server_options(Keepalive(seconds=7, timeout_seconds=4), 2)) == {
        "grpc.keepalive_time_ms": 7000,
        "grpc.keepalive_timeout_ms": 4000,
        "grpc.http2.ping_timeout_ms": 4000,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.min_ping_interval_without_data_ms": 2000,
    }


def test_the_default_bound_is_thirty_seconds() -> None:
    assert Keepalive().bound_seconds == 30


def test_the_agents_client_gets_the_configured_keepalive_and_retry_policy(tmp_path: Path) -> None:
    write_federation(tmp_path)
    settings = "keepalive_seconds = 3\nkeepalive_timeout_seconds = 2\n"
    retry = "\n[retry]\nattempts = 2\ninitial_backoff_seconds = 0.1\nmax_backoff_seconds = 0.3\n"
    text = agent_config("jprs", 7443).replace("\n[server]", f"{settings}\n[server]") + retry
    (tmp_path / "jprs.toml").write_text(text)
    agent = Agent(load_agent_config(tmp_path / "jprs.toml"))
    try:
        assert agent.client.keepalive == Keepalive(seconds=3, timeout_seconds=2)
        assert agent.client.retry == RetryPolicy(base=0.1, factor=2.0, cap=0.3, retries=1)
    finally:
        agent.close()
