"""A real exchange server process over mutual TLS on loopback, in a fresh federation per test."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from invsync.agent.config.settings import PairingConfig, load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.report.body import parse_report_body
from invsync.server.localfed import PARTIES, agent_config, server_process, write_federation

DEMO_PAIRING = "secom-jprs"  # the one pairing of the federation `write_federation` writes


@dataclass(frozen=True)
class Federation:
    work: Path
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, party: str, address: str = "") -> ExchangeClient:
        """A client holding `party`'s TLS certificate (dialling `address`, else the server)."""
        tls = self.work / "tls"
        endpoint = ServerEndpoint(
            address=address or self.address,
            ca=tls / "ca.pem",
            cert=tls / f"{party}.crt",
            key=tls / f"{party}.key",
            signing_keys=(self.work / "keys" / "server.pub",),
        )
        return ExchangeClient(endpoint, timeout=10)


def wait_for(path: Path, text: str, seconds: float = 60) -> str:
    """The content of a daemon's output file once `text` appears in it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text()
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path}:\n{path.read_text()}")


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    write_federation(tmp_path)
    with server_process(tmp_path) as port:
        for party in PARTIES:
            (tmp_path / f"{party}.toml").write_text(agent_config(party, port))
        yield Federation(tmp_path, port)


def make_agent(federation: Federation, party: str) -> Agent:
    """`party`'s agent in process, with the configuration the federation wrote for it."""
    return Agent(load_agent_config(federation.work / f"{party}.toml"))


def pairing_of(agent: Agent) -> PairingConfig:
    return agent.config.pairings[DEMO_PAIRING]


def await_report(
    client: ExchangeClient, root: int | None, subordinate: int | None, seconds: float = 20
) -> None:
    """Wait until the server's latest report of the demo pairing compares these versions (None:
    any): the server makes reports off the push (server/report_worker.py)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(NotFoundYet):
            body = parse_report_body(client.report(DEMO_PAIRING).envelope.payload)
            seen = (body.root.version, body.subordinate.version)
            if all(
                want in (None, got) for want, got in zip((root, subordinate), seen, strict=True)
            ):
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"no report on versions {root} and {subordinate} in {seconds} s")
        time.sleep(0.05)


@pytest.fixture
def agents(federation: Federation) -> Iterator[dict[str, Agent]]:
    """Both agents collected and pushed version 1 with the server's real receipts: the server
    holds its report on the two snapshots."""
    made = {party: make_agent(federation, party) for party in PARTIES}
    try:
        # Each push's report is waited for (they are made off the push), so the log holds the
        # same entries in the same order every run: secom's, its report, jprs's, theirs.
        versions = {"secom": (1, 0), "jprs": (1, 1)}
        for party, agent in made.items():
            agent.collect()
            agent.push(pairing_of(agent))
            await_report(agent.client, *versions[party])
        yield made
    finally:
        for agent in made.values():
            agent.close()
