"""One report builder for the server and the co-signing agents (`agent.report.build`).

A real exchange in process (SQLite store, acceptance, `ReportMaker`) and a real `ReportCheck` per
agent whose client asks that exchange: the SECOM/JPRS demo inventories are pushed step by step,
and at every step the body the server signed is the body each agent builds, byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from invsync.agent.config.settings import AgentConfig, PairingConfig
from invsync.agent.daemon.report_check import ReportCheck
from invsync.agent.daemon.rotation import OwnKeys, PeerKeys
from invsync.agent.errors import ReportError
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.rejections import NotFound
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
    Served,
    build_payload,
    decode_payload,
    sign_snapshot,
    to_chunks,
)
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.agent.reconcile.rules.stale_peer import never_sent
from invsync.agent.report.body import ReportBody, build_report_body, parse_report_body
from invsync.agent.report.build import ReportSide, build_report
from invsync.agent.store.agent_store import AgentStore
from invsync.server.exchange import Exchange
from invsync.server.report_news import ReportWait
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, Clock, Keys, make_rig
from tests.report_helpers import DV_BUG, JPRS_LIST, OV_BUG, SECOM_LOG

ROLES = {"secom": ROOT, "jprs": SUBORDINATE}
PEERS = {"secom": "jprs", "jprs": "secom"}
MISSING = "missing-at-subordinate"
# JPRS acknowledges the OV certificate of bug 1695993 in its second snapshot.
ACK = Acknowledgement(MISSING, OV_BUG, "revocation planned", NOW, NOW + timedelta(days=30))


@dataclass(frozen=True)
class Step:
    """A push `after` hours past the previous one, its snapshot valid for `valid` hours."""

    after: int
    party: str
    records: Sequence[CertRecord]
    valid: int
    acks: tuple[Acknowledgement, ...] = ()


# Each push makes a report; the scenarios below are the reports after 1, 2, 3 and 4 pushes.
STEPS = (
    Step(0, "secom", SECOM_LOG, 24),  # jprs has sent nothing yet
    Step(1, "jprs", JPRS_LIST, 24),  # both present; continues the first report
    Step(1, "jprs", JPRS_LIST[1:], 1, (ACK,)),  # jprs drops a record, acknowledges a finding
    Step(2, "secom", SECOM_LOG, 24),  # jprs's second snapshot expired an hour ago: stale
)
SCENARIOS = [
    pytest.param(0, ("secom",), id="peer-never-pushed"),
    pytest.param(1, ("secom", "jprs"), id="both-present"),
    pytest.param(2, ("secom", "jprs"), id="previous-report-and-acknowledgement"),
    # The fresh side's agent refuses an expired peer snapshot: only the stale side can co-sign.
    pytest.param(3, ("jprs",), id="stale-peer"),
]


@dataclass
class InProcessClient:
    """What the report check asks the exchange, answered by the in-process one as `party`."""

    exchange: Exchange
    party: str

    def fetch_peer_snapshot(
        self, pairing: str, version: int = 0, base_sha256: bytes = b""
    ) -> Served:
        try:
            env, full = self.exchange.fetch_peer_snapshot(self.party, pairing, version, base_sha256)
        except NotFound as e:  # what the gRPC client raises on NOT_FOUND
            raise NotFoundYet(str(e)) from e
        return Served(env.payload_type, env.payload, env.signatures, full=full)

    def peer_has_snapshot(self, pairing: str) -> bool:
        try:
            self.exchange.peer_snapshot(self.party, pairing, 0)
        except NotFound:
            return False
        return True

    def report(
        self,
        pairing: str,
        report_id: str = "",
        *,
        naming: str = "",
        past: str = "",
        wait_seconds: int = 0,
    ) -> pb.Report:
        wait = ReportWait(self.party, naming, past, wait_seconds) if wait_seconds else None
        stored = self.exchange.report(self.party, pairing, report_id, wait)
        return pb.Report(report_id=stored.report_id, envelope=stored.envelope.to_pb())


@dataclass
class Party:
    """One agent: the snapshots it sent, its store and its real report check."""

    name: str
    key: SigningKey
    store: AgentStore
    checker: ReportCheck
    sent: list[bytes] = field(default_factory=list)

    def check(self, body: bytes) -> None:
        pairing = PairingConfig(PAIRING, ROLES[self.name], PEERS[self.name], (), ())
        self.checker.check(pairing, decode_payload(self.sent[-1]), body)


@dataclass
class InProcessFederation:
    """The in-process exchange and both agents, pushing STEPS in turn on one clock."""

    clock: Clock
    store: ServerStore
    exchange: Exchange
    parties: dict[str, Party]
    pushed: int = 0

    def replay(self, last: int) -> bytes:
        """Push the steps up to STEPS[last]; the body of the report the last push made."""
        for step in STEPS[self.pushed : last + 1]:
            self.clock.now += timedelta(hours=step.after)
            self.push(step)
        self.pushed = last + 1
        stored = self.store.report(PAIRING)
        assert stored is not None and self.store.db.table("reports").count == last + 1
        return stored.envelope.payload

    def push(self, step: Step) -> None:
        party = self.parties[step.party]
        data = self.payload(step, party.sent)
        env = sign_snapshot(data, party.key)
        self.exchange.push(step.party, to_chunks(env))
        header = decode_payload(data).header
        sigs = [(s.keyid, s.sig) for s in env.signatures]
        args = (header.version, data, SNAPSHOT_PAYLOAD_TYPE, sigs, header.issued_at)
        party.store.record_sent_snapshot(PAIRING, *args, header.expires_at)
        party.sent.append(data)

    def payload(self, step: Step, sent: list[bytes]) -> bytes:
        return build_payload(
            party=step.party,
            pairing=PAIRING,
            role=ROLES[step.party],
            version=len(sent) + 1,
            issued_at=self.clock.now,
            expires_at=self.clock.now + timedelta(hours=step.valid),
            records=step.records,
            previous_digest=hashlib.sha256(sent[-1]).digest() if sent else b"",
            acknowledgements=step.acks,
        )


def agent_config(party: str, tmp: Path) -> AgentConfig:
    """Only `party` matters to the report check; the paths name files it never opens."""
    endpoint = ServerEndpoint("127.0.0.1:1", tmp / "ca.pem", tmp / "tls.crt", tmp / "tls.key", ())
    return AgentConfig(
        file=tmp / f"{party}.toml",
        party=party,
        database=tmp / f"{party}.db",
        signing_key=tmp / f"{party}.key",
        sources=(),
        report_dir=tmp,
        snapshot_validity_seconds=86400,
        snapshot_refresh_seconds=3600,
        rpc_timeout_seconds=10,
        server=endpoint,
        peers={},
        pairings={},
    )


def make_party(name: str, tmp: Path, keys: Keys, exchange: Exchange, clock: Clock) -> Party:
    store = AgentStore(tmp / f"{name}.db")
    peer = PEERS[name]
    checker = ReportCheck(
        config=agent_config(name, tmp),
        store=store,
        client=cast(ExchangeClient, InProcessClient(exchange, name)),
        keys=OwnKeys(keys.of(name)),
        server_keys={keys.server.keyid: keys.server.public},
        peer_keys=PeerKeys(store, {peer: exchange.policy.parties[peer]}, clock),
        clock=clock,
    )
    return Party(name, keys.of(name), store, checker)


@pytest.fixture
def inproc_fed(tmp_path: Path, keys: Keys) -> Iterator[InProcessFederation]:
    """The exchange rig's in-process exchange with both parties' agents (named apart from
    conftest's `fed`, the demo federation's files)."""
    rig = make_rig(tmp_path / "server.db", keys)
    parties = {name: make_party(name, tmp_path, keys, rig.exchange, rig.clock) for name in ROLES}
    yield InProcessFederation(rig.clock, rig.store, rig.exchange, parties)
    for party in parties.values():
        party.store.close()
    rig.store.close()


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[bytes]]:
    """Every body the one builder returned, by caller: the server's ReportMaker or an agent."""
    calls: dict[str, list[bytes]] = {"server": [], "agent": []}
    for caller, module in (
        ("server", "invsync.server.reconciling"),
        ("agent", "invsync.agent.daemon.report_check"),
    ):
        monkeypatch.setattr(f"{module}.build_report", _recording(calls[caller]))
    return calls


def _recording(into: list[bytes]) -> Callable[..., bytes]:
    def spy(**kwargs: Any) -> bytes:
        body = build_report(**kwargs)
        into.append(body)
        return body

    return spy


# --- the property: one builder, the same bytes on both sides -----------------------------------


@pytest.mark.parametrize(("last", "checkers"), SCENARIOS)
def test_the_server_and_each_agent_build_the_same_bytes(
    inproc_fed: InProcessFederation,
    built: dict[str, list[bytes]],
    last: int,
    checkers: tuple[str, ...],
) -> None:
    body = inproc_fed.replay(last)
    assert built["server"][-1] == body
    for party in checkers:
        inproc_fed.parties[party].check(body)  # raises unless the agent built these very bytes
    assert built["agent"] == [body] * len(checkers)


def test_the_scenarios_are_what_they_claim(inproc_fed: InProcessFederation) -> None:
    alone = parse_report_body(inproc_fed.replay(0))
    assert (alone.subordinate.version, alone.previous_report) == (0, None)
    assert [f.message for f in alone.findings] == [never_sent("jprs", PAIRING).message]
    both = parse_report_body(inproc_fed.replay(1))
    assert (both.root.version, both.subordinate.version) == (1, 1)
    assert (both.previous_report, [r.finding.code for r in both.resolved]) == (
        alone.report_id,
        ["stale-peer"],
    )
    changed = parse_report_body(inproc_fed.replay(2))
    acked = _finding(changed, MISSING, OV_BUG)
    assert (acked.acknowledgement is not None, acked.first_seen) == (True, both.as_of)
    dropped = JPRS_LIST[0].sha256  # needs jprs's previous snapshot on both sides
    assert _finding(changed, "disappeared", dropped).first_seen == changed.as_of
    assert _finding(changed, MISSING, dropped).first_seen == changed.as_of
    stale = parse_report_body(inproc_fed.replay(3))
    (finding,) = [f for f in stale.findings if f.code == "stale-peer"]
    assert finding.party == "jprs"
    assert finding.message.startswith("jprs's snapshot version 2 issued 2021-03-01T14:00:00Z")
    assert "expired 2021-03-01T15:00:00Z" in finding.message


def _finding(body: ReportBody, code: str, sha256: str) -> Finding:
    (found,) = [f for f in body.findings if (f.code, f.sha256) == (code, sha256)]
    return found


# --- an agent refuses a body it did not build ---------------------------------------------------


def forged(
    fed: InProcessFederation, body: bytes, edit: Callable[[list[Finding]], list[Finding]]
) -> bytes:
    """The body with its findings edited, rebuilt canonically on the same previous report."""
    parsed = parse_report_body(body)
    assert parsed.previous_report is not None
    stored = fed.store.report(PAIRING, parsed.previous_report)
    assert stored is not None
    return build_report_body(
        pairing=parsed.pairing,
        as_of=parsed.as_of,
        root=parsed.root,
        subordinate=parsed.subordinate,
        findings=edit(list(parsed.findings)),
        signers=parsed.signers,
        previous=parse_report_body(stored.envelope.payload),
    )


def _demoted(findings: list[Finding]) -> list[Finding]:
    return [
        replace(f, severity=Severity.NOTICE) if (f.code, f.sha256) == (MISSING, DV_BUG) else f
        for f in findings
    ]


def _dropped(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if (f.code, f.sha256) != (MISSING, DV_BUG)]


@pytest.mark.parametrize("party", ["secom", "jprs"])
@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (_demoted, f"server and I differ on {MISSING} {DV_BUG}: severity 'notice' vs mine 'error'"),
        (_dropped, f"I find {MISSING} {DV_BUG} that server does not list"),
    ],
    ids=["severity", "dropped"],
)
def test_a_changed_finding_is_refused_saying_which(
    inproc_fed: InProcessFederation,
    party: str,
    edit: Callable[[list[Finding]], list[Finding]],
    why: str,
) -> None:
    body = inproc_fed.replay(2)
    inproc_fed.parties[party].check(body)  # the real one is signed
    message = f"refusing to sign report on pairing {PAIRING!r}: {why}"
    with pytest.raises(ReportError, match=f"^{re.escape(message)}$"):
        inproc_fed.parties[party].check(forged(inproc_fed, body, edit))


# --- the builder alone ----------------------------------------------------------------------


def test_a_report_needs_a_snapshot_of_either_side() -> None:
    message = "pairing 'secom-jprs': neither party has sent a snapshot to report on"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_report(
            pairing=PAIRING,
            as_of=NOW,
            root=ReportSide("secom"),
            subordinate=ReportSide("jprs"),
            signers=[],
        )
