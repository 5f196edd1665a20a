"""A push whose receipt was lost: the next cycle re-pushes it, then continues the chain."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import TransportError
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.snapshot import decode_header
from tests.integration.conftest import Federation

pytestmark = pytest.mark.integration


def _server_snapshots(fed: Federation) -> dict[int, bytes]:
    with sqlite3.connect(fed.work / "state" / "server.db") as db:
        rows = db.execute(
            "select version, payload from snapshots where party = 'jprs' order by version"
        ).fetchall()
    assert len(rows) == len({v for v, _ in rows}), rows  # each version stored once
    return {int(v): bytes(p) for v, p in rows}


def test_a_lost_receipt_is_recovered_by_re_pushing_the_pending_snapshot(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(load_agent_config(federation.work / "jprs.toml"))
    pairing = agent.config.pairings["secom-jprs"]
    real_push = agent.client.push

    def push_then_lose_the_receipt(env: Envelope, log_size_held: int = 0) -> Envelope:
        real_push(env)  # the server commits and answers
        raise TransportError(f"{agent.client.address}: PushSnapshot: UNAVAILABLE: receipt lost")

    agent.collect()
    monkeypatch.setattr(agent.client, "push", push_then_lose_the_receipt)
    with pytest.raises(TransportError, match="receipt lost"):
        agent.push(pairing)
    assert agent.store.latest_sent_snapshot(pairing.name) is None
    pending = agent.store.pending_snapshot(pairing.name)
    assert pending is not None and pending.version == 1
    assert _server_snapshots(federation) == {1: pending.payload}

    monkeypatch.setattr(agent.client, "push", real_push)
    assert agent.push(pairing) == 2
    assert agent.store.pending_snapshot(pairing.name) is None
    stored = _server_snapshots(federation)
    assert sorted(stored) == [1, 2]
    assert stored[1] == pending.payload
    v2 = decode_header(stored[2])
    assert v2.delta  # built on version 1, whose whole set this agent kept
    assert v2.previous_digest == hashlib.sha256(stored[1]).digest()
    sent = agent.store.sent_snapshot(pairing.name, 1)
    assert sent is not None and sent.payload == pending.payload
    agent.close()


def test_a_pending_snapshot_the_server_never_got_is_pushed_first(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(load_agent_config(federation.work / "jprs.toml"))
    pairing = agent.config.pairings["secom-jprs"]
    real_push = agent.client.push

    def never_arrives(env: Envelope, log_size_held: int = 0) -> Envelope:
        raise TransportError(f"{agent.client.address}: unreachable")

    agent.collect()
    monkeypatch.setattr(agent.client, "push", never_arrives)
    with pytest.raises(TransportError):
        agent.push(pairing)
    assert _server_snapshots(federation) == {}
    monkeypatch.setattr(agent.client, "push", real_push)
    assert agent.push(pairing) == 2
    stored = _server_snapshots(federation)
    assert sorted(stored) == [1, 2]
    assert decode_header(stored[2]).previous_digest == hashlib.sha256(stored[1]).digest()
    agent.close()
