"""A cycle's snapshots read the inventory its collection stored, handed over instead of read
back (issue 13): on the demo federation's real sources (an issuance log with revocations,
lifecycles and operators; a PEM list with an audit scope list) it is exactly what the store
reads back, after a first collection and after a later one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.record_codec import record_to_pb
from invsync.agent.model.record import CertRecord
from invsync.server.localfed import agent_config, write_federation

START = datetime(2026, 12, 5, 9, tzinfo=UTC)


@pytest.mark.parametrize("party", ["secom", "jprs"])
def test_the_held_inventory_is_the_stored_one(tmp_path: Path, party: str) -> None:
    write_federation(tmp_path)
    (tmp_path / f"{party}.toml").write_text(agent_config(party, 7443))
    now = [START]
    agent = Agent(load_agent_config(tmp_path / f"{party}.toml"), clock=lambda: now[0])
    try:
        for hours in (0, 5):
            now[0] = START + timedelta(hours=hours)
            assert agent.collect() > 0
            assert agent.held is not None
            stored = agent.store.inventory()
            assert agent.held == stored
            # Equal as sent too: == takes two zones' datetimes of one instant as equal.
            assert [_sent(r) for r in agent.held] == [_sent(r) for r in stored]
            assert any(r.revocation or r.audit_scope or r.operator for r in agent.held)
        agent.end_cycle()
        assert agent.held is None
    finally:
        agent.close()


def _sent(record: CertRecord) -> bytes:
    return record_to_pb(record).SerializeToString(deterministic=True)
