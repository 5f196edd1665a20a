"""The agent's trusted state against a real server process, served what a hostile exchange
operator would serve it (agent/exchange/trusted.py).

Both agents run in process (`agent.daemon.cycle.Agent`) against the federation's real server over
mutual TLS; the hostile answers come from a fake that wraps the agent's real client and replaces
one call: a report the server really signed, handed back as the receipt of a push; a report on an
older peer snapshot than one the agent already verified; a report signed by another key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, cast

import pytest
from click.testing import CliRunner

from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import generate
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE
from invsync.agent.exchange.rejections import (
    PayloadTypeError,
    PeerRollbackError,
    ServerSignatureError,
)
from invsync.agent.exchange.trusted import Verified
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server.cli import invsync
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import Federation, await_report, make_agent, pairing_of

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"


class Hostile:
    """The agent's real client, but for the calls given: what a hostile exchange answers."""

    def __init__(self, real: ExchangeClient, **calls: Callable[..., Any]) -> None:
        self.real = real
        self.calls = calls

    def __getattr__(self, name: str) -> Any:
        return self.calls.get(name) or getattr(self.real, name)


def serve(agent: Agent, real: ExchangeClient, **calls: Callable[..., Any]) -> None:
    """From now on `agent` (its cycle and its report check) talks to a hostile exchange."""
    client = cast(ExchangeClient, Hostile(real, **calls))
    agent.client = agent.checker.client = client


def latest_report(agent: Agent) -> tuple[str, Envelope]:
    report = agent.client.report(PAIRING)
    return report.report_id, Envelope.from_pb(report.envelope)


def test_a_signed_report_served_as_a_receipt_is_refused_and_the_push_stays_pending(
    agents: dict[str, Agent],
) -> None:
    secom = agents["secom"]
    state = secom.store.trusted_state(PAIRING)
    assert (sorted(state.receipts), state.own and state.own.version) == ([1], 1)
    real = secom.client
    _, signed_report = latest_report(secom)  # the server's key signed it: it is no receipt

    def push(env: Envelope, log_size_held: int = 0) -> Envelope:
        real.push(env)  # the server accepts the snapshot, then answers with the report
        return signed_report

    serve(secom, real, push=push)
    message = (
        f"refused [wrong-payload-type]: receipt for version 2: payload type "
        f"{REPORT_PAYLOAD_TYPE!r} is not {RECEIPT_PAYLOAD_TYPE!r}"
    )
    with pytest.raises(PayloadTypeError, match=f"^{re.escape(message)}$"):
        secom.push(pairing_of(secom))
    pending = secom.store.pending_snapshot(PAIRING)
    sent = secom.store.latest_sent_snapshot(PAIRING)
    assert (pending and pending.version, sent and sent.version) == (2, 1)
    assert secom.store.trusted_state(PAIRING) == state  # nothing of the refused answer kept

    # The next cycle re-pushes the same bytes, and the server's own receipt is taken.
    serve(secom, real)
    secom.sync(pairing_of(secom))
    after = secom.store.trusted_state(PAIRING)
    assert secom.store.pending_snapshot(PAIRING) is None
    assert (sorted(after.receipts), after.own and after.own.version) == ([1, 2], 2)
    assert after.receipts[2].payload_type == RECEIPT_PAYLOAD_TYPE


def test_an_older_peer_snapshot_served_after_a_newer_one_is_refused_and_recorded(
    federation: Federation, agents: dict[str, Agent]
) -> None:
    secom, jprs = agents["secom"], agents["jprs"]
    older_id, _ = latest_report(secom)  # on secom v1 and jprs v1
    jprs.push(pairing_of(jprs))  # jprs v2: the server's report is now on jprs v2
    await_report(secom.client, 1, 2)  # made off the push
    newer_id = secom.cosign(pairing_of(secom), wait_seconds=10)
    verified = secom.store.trusted_state(PAIRING).peer
    assert newer_id != older_id and verified is not None and verified.version == 2

    # The server then serves the report on jprs v1 again, still signed and unexpired.
    real = secom.client
    older = real.report(PAIRING, older_id)
    serve(secom, real, report=lambda pairing, report_id="", **_: older)
    message = (
        f"refused [peer-rollback]: the exchange server served jprs's snapshot version 1 of "
        f"pairing {PAIRING!r} after version 2 ({verified.digest[:16]}) was verified here: "
        "rollback or freeze"
    )
    with pytest.raises(PeerRollbackError, match=f"^{re.escape(message)}$"):
        secom.cosign(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned(older_id)
    assert len(real.report(PAIRING, older_id).envelope.signatures) == 1  # the server's alone
    (refusal,) = secom.store.refusals(PAIRING)
    assert (refusal.rule, refusal.finding.code, refusal.finding.party) == (
        "peer-rollback",
        "peer-rollback",
        "",
    )
    assert secom.store.trusted_state(PAIRING).peer == verified

    # A restarted agent keeps the state: the same rollback is refused again.
    secom.close()
    restarted = make_agent(federation, "secom")
    agents["secom"] = restarted  # the fixture closes it
    assert restarted.store.trusted_state(PAIRING).peer == Verified(2, verified.digest)
    serve(restarted, restarted.client, report=lambda pairing, report_id="", **_: older)
    with pytest.raises(PeerRollbackError, match=re.escape("after version 2")):
        restarted.cosign(pairing_of(restarted), wait_seconds=10)
    config = str(federation.work / "secom.toml")
    status = CliRunner().invoke(invsync, ["status", "--config", config, "--offline"]).output
    assert "  REFUSED: 2 answer(s) of the server, last at " in status, status
    assert ": peer-rollback: the exchange server served jprs's snapshot version 1" in status


def test_a_report_is_refused_on_its_signature_before_its_body_is_read(
    agents: dict[str, Agent],
) -> None:
    """The body is not even JSON: a parse first would fail on that, not on the signature."""
    jprs = agents["jprs"]
    impostor = generate()
    body = b'{"schema": "not a report'
    forged = Envelope(REPORT_PAYLOAD_TYPE, body).to_pb()
    forged.signatures.add(keyid=impostor.keyid, sig=impostor.sign(b"anything"))
    served = pb.Report(report_id="0" * 64, envelope=forged)
    serve(jprs, jprs.client, report=lambda pairing, report_id="", **_: served)
    message = (
        "refused [bad-server-signature]: the exchange server (report): 0 of 1 required "
        f"signatures verified; signed by untrusted key {impostor.keyid}"
    )
    with pytest.raises(ServerSignatureError, match=f"^{re.escape(message)}$"):
        jprs.cosign(pairing_of(jprs), wait_seconds=10)


def test_the_reports_an_agent_writes_show_its_pins(agents: dict[str, Agent]) -> None:
    for agent in agents.values():
        agent.cosign(pairing_of(agent), wait_seconds=10)
    secom = agents["secom"]
    result = secom.settle(pairing_of(secom), wait_seconds=10)
    assert result.complete
    markdown = result.markdown_path.read_text()
    assert "Signatures complete: server valid, root valid, subordinate valid." in markdown
    html = result.report_path.with_name(result.report_path.name.replace(".report.json", ".html"))
    assert "<strong>Signatures complete</strong>" in html.read_text()
    # The same files, read without the agent's pins, say nothing is verified.
    shown = (
        CliRunner()
        .invoke(invsync, ["report", "show", str(result.report_path), "--format", "markdown"])
        .output
    )
    assert "| unverified (no key pinned for secom) |" in shown


def test_the_peer_snapshot_verified_last_cycle_is_not_fetched_again(
    agents: dict[str, Agent],
) -> None:
    """Issue 13: the report compares the peer's current snapshot with the one before, which
    this agent verified the cycle before; it is verified again from the agent's database, not
    fetched (and one a chain reset replaced would not match the digest the next one names)."""
    secom, jprs = agents["secom"], agents["jprs"]
    real = secom.client
    fetched: list[int] = []

    def fetch(pairing: str, version: int = 0, base_sha256: bytes = b"") -> Envelope:
        fetched.append(version)
        return real.fetch_peer_snapshot(pairing, version, base_sha256)

    serve(secom, real, fetch_peer_snapshot=fetch)
    secom.cosign(pairing_of(secom), wait_seconds=10)  # on jprs v1
    jprs.push(pairing_of(jprs))
    await_report(real, 1, 2)
    secom.cosign(pairing_of(secom), wait_seconds=10)  # on jprs v2, v1 before it
    assert fetched == [1, 2]
    assert secom.store.trusted_state(PAIRING).peer == Verified(
        2, hashlib.sha256(real.fetch_peer_snapshot(PAIRING, 2).payload).hexdigest()
    )
