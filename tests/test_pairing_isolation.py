"""One pairing's failure does not keep an agent's other pairings from their cycle (issue 14:
a pairing removed at the server before the agent's own file says so), but a server that does
not answer ends the cycle at once: every pairing would wait out the same retries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest

from invsync.agent.cli import agent as agent_cli
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import InvsyncError, TransportError
from invsync.agent.exchange.client import Refused


@dataclass
class Pairing:
    name: str
    peer: str = "peer"


@dataclass
class Config:
    pairings: dict[str, Pairing]


@dataclass
class FakeAgent:
    """Only what `_pairings` reads of an agent; the pairings' cycles are the test's."""

    config: Config
    ended: list[str] = field(default_factory=list)

    def end_pairing(self, name: str) -> None:
        self.ended.append(name)


def _agent(*names: str) -> FakeAgent:
    return FakeAgent(Config({n: Pairing(n) for n in names}))


def _run(
    monkeypatch: pytest.MonkeyPatch, agent: FakeAgent, fails: dict[str, InvsyncError]
) -> list[str]:
    ran: list[str] = []

    def cycle(agent: object, pairing: Pairing, wait: float) -> str:
        ran.append(pairing.name)
        if pairing.name in fails:
            raise fails[pairing.name]
        return pairing.name

    monkeypatch.setattr(agent_cli, "_pairing_cycle", cycle)
    with pytest.raises(InvsyncError) as caught:
        agent_cli._pairings(cast(Agent, agent), 1.0)
    assert caught.value is next(iter(fails.values()))  # the first failure, as it was raised
    return ran


def test_a_refused_pairing_lets_the_next_run_and_its_error_is_raised_after(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gone = Refused("127.0.0.1:1: GetReport: PERMISSION_DENIED: party 'secom' is not a member")
    also = Refused("127.0.0.1:1: PushSnapshot: INVALID_ARGUMENT: stale")
    agent = _agent("secom-nii", "secom-jprs", "secom-xyz")
    ran = _run(monkeypatch, agent, {"secom-nii": gone, "secom-xyz": also})
    assert ran == ["secom-nii", "secom-jprs", "secom-xyz"]
    assert agent.ended == ran
    assert [r.getMessage() for r in caplog.records] == [
        "pairing secom-xyz failed too: 127.0.0.1:1: PushSnapshot: INVALID_ARGUMENT: stale"
    ]


def test_a_server_that_does_not_answer_ends_the_cycle_at_the_first_pairing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    down = TransportError("127.0.0.1:1: PushSnapshot: UNAVAILABLE: connection refused")
    agent = _agent("secom-nii", "secom-jprs")
    assert _run(monkeypatch, agent, {"secom-nii": down}) == ["secom-nii"]
    assert agent.ended == ["secom-nii"]


def test_every_pairing_ran_returns_every_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_cli, "_pairing_cycle", lambda agent, pairing, wait: pairing.name)
    results = agent_cli._pairings(cast(Agent, _agent("a", "b")), 1.0)
    assert cast(list[str], results) == ["a", "b"]
