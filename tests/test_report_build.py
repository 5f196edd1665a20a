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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from invsync.agent.config.settings import AgentConfig, PairingConfig
from invsync.agent.daemon.report_check import ReportCheck
from invsync.agent.daemon.rotation import OwnKeys, PeerKeys
from invsync.agent.errors import ReportError
from invsync.agent.exchange.acceptance import AcceptancePolicy, PairingPolicy, PartyPolicy
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.exchange.rejections import NotFound
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
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
from invsync.server.reconciling import ReportMaker
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb
from tests.report_helpers import DV_BUG, JPRS_LIST, OV_BUG, SECOM_LOG

T0 = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)
PAIRING = "secom-jprs"
ROLES = {"secom": ROOT, "jprs": SUBORDINATE}
PEERS = {"secom": "jprs", "jprs": "secom"}
MISSING = "missing-at-subordinate"
# JPRS acknowledges the OV certificate of bug 1695993 in its second snapshot.
ACK = Acknowledgement(MISSING, OV_BUG, "revocation planned", T0, T0 + timedelta(days=30))


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
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class InProcessClient:
    """What the report check asks the exchange, answered by the in-process one as `party`."""

    exchange: Exchange
    party: str

    def fetch_peer_snapshot(self, pairing: str, version: int = 0) -> Envelope:
        try:
            return self.exchange.fetch_peer_snapshot(self.party, pairing, version)
        except NotFound as e:  # what the gRPC client raises on NOT_FOUND
            raise NotFoundYet(str(e)) from e

    def report(self, pairing: str, report_id: str = "") -> pb.Report:
        stored = self.exchange.report(self.party, pairing, report_id)
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
class Federation:
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


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {"server": generate(), "secom": generate(), "jprs": generate()}


def party_policy(party: str, keys: dict[str, SigningKey]) -> PartyPolicy:
    return PartyPolicy(party, {keys[party].keyid: keys[party].public})


def make_exchange(path: Path, keys: dict[str, SigningKey], clock: Clock) -> Exchange:
    store = ServerStore(path)
    policy = AcceptancePolicy(
        parties={party: party_policy(party, keys) for party in ROLES},
        pairings={PAIRING: PairingPolicy(PAIRING, root="secom", subordinate="jprs")},
    )
    common: dict[str, Any] = {"store": store, "policy": policy, "signing_key": keys["server"]}
    reports = ReportMaker(server_name="test-exchange", clock=clock, **common)
    return Exchange(
        name="test-exchange", reports=reports, max_snapshot_bytes=1 << 20, clock=clock, **common
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


def make_party(
    name: str, tmp: Path, keys: dict[str, SigningKey], exchange: Exchange, clock: Clock
) -> Party:
    store = AgentStore(tmp / f"{name}.db")
    checker = ReportCheck(
        config=agent_config(name, tmp),
        store=store,
        client=cast(ExchangeClient, InProcessClient(exchange, name)),
        keys=OwnKeys(keys[name]),
        server_keys={keys["server"].keyid: keys["server"].public},
        peer_keys=PeerKeys(store, {PEERS[name]: party_policy(PEERS[name], keys)}, clock),
        clock=clock,
    )
    return Party(name, keys[name], store, checker)


@pytest.fixture
def fed(tmp_path: Path, keys: dict[str, SigningKey]) -> Iterator[Federation]:
    clock = Clock()
    exchange = make_exchange(tmp_path / "server.db", keys, clock)
    parties = {name: make_party(name, tmp_path, keys, exchange, clock) for name in ROLES}
    yield Federation(clock, exchange.store, exchange, parties)
    for party in parties.values():
        party.store.close()
    exchange.store.close()


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
    fed: Federation, built: dict[str, list[bytes]], last: int, checkers: tuple[str, ...]
) -> None:
    body = fed.replay(last)
    assert built["server"][-1] == body
    for party in checkers:
        fed.parties[party].check(body)  # raises unless the agent built these very bytes
    assert built["agent"] == [body] * len(checkers)


def test_the_scenarios_are_what_they_claim(fed: Federation) -> None:
    alone = parse_report_body(fed.replay(0))
    assert (alone.subordinate.version, alone.previous_report) == (0, None)
    assert [f.message for f in alone.findings] == [never_sent("jprs", PAIRING).message]
    both = parse_report_body(fed.replay(1))
    assert (both.root.version, both.subordinate.version) == (1, 1)
    assert (both.previous_report, [r.finding.code for r in both.resolved]) == (
        alone.report_id,
        ["stale-peer"],
    )
    changed = parse_report_body(fed.replay(2))
    acked = _finding(changed, MISSING, OV_BUG)
    assert (acked.acknowledgement is not None, acked.first_seen) == (True, both.as_of)
    dropped = JPRS_LIST[0].sha256  # needs jprs's previous snapshot on both sides
    assert _finding(changed, "disappeared", dropped).first_seen == changed.as_of
    assert _finding(changed, MISSING, dropped).first_seen == changed.as_of
    stale = parse_report_body(fed.replay(3))
    (finding,) = [f for f in stale.findings if f.code == "stale-peer"]
    assert finding.party == "jprs"
    assert finding.message.startswith("jprs's snapshot version 2 issued 2021-03-01T14:00:00Z")
    assert "expired 2021-03-01T15:00:00Z" in finding.message


def _finding(body: ReportBody, code: str, sha256: str) -> Finding:
    (found,) = [f for f in body.findings if (f.code, f.sha256) == (code, sha256)]
    return found


# --- an agent refuses a body it did not build ---------------------------------------------------


def forged(fed: Federation, body: bytes, edit: Callable[[list[Finding]], list[Finding]]) -> bytes:
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
    fed: Federation, party: str, edit: Callable[[list[Finding]], list[Finding]], why: str
) -> None:
    body = fed.replay(2)
    fed.parties[party].check(body)  # the real one is signed
    message = f"refusing to sign report on pairing {PAIRING!r}: {why}"
    with pytest.raises(ReportError, match=f"^{re.escape(message)}$"):
        fed.parties[party].check(forged(fed, body, edit))


# --- the builder alone ----------------------------------------------------------------------


def test_a_report_needs_a_snapshot_of_either_side() -> None:
    message = "pairing 'secom-jprs': neither party has sent a snapshot to report on"
    with pytest.raises(ValueError, match=re.escape(message)):
        build_report(
            pairing=PAIRING,
            as_of=T0,
            root=ReportSide("secom"),
            subordinate=ReportSide("jprs"),
            signers=[],
        )
