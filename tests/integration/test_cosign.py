"""Co-signing against a real server process: an agent signs only a report it computed itself.

Both agents run in process (`agent.daemon.cycle.Agent`) against the federation's real server over
mutual TLS. A report whose findings differ from the agent's own, even one carrying a valid
signature of the pinned server key, is refused with a message naming the differing finding;
a report signed by any other key is refused as not the exchange server's, before its body is
read (agent/exchange/trusted.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import ReportError
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keys import SigningKey, generate, load_signing_key
from invsync.agent.exchange.rejections import ServerSignatureError
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Signer,
    build_report_body,
    parse_report_body,
    report_id,
    verify_report,
)
from invsync.agent.report.build import build_report
from invsync.server.store import ServerStore
from tests.integration.conftest import Federation, pairing_of

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"
BUG_1695993 = (
    "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62",
    "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4",
)
MISSING = "missing-at-subordinate"


def server_report(agent: Agent) -> tuple[str, Envelope]:
    report = agent.client.report(PAIRING)
    return report.report_id, Envelope.from_pb(report.envelope)


def forged(body_bytes: bytes, edit: Callable[[list[Finding]], list[Finding]]) -> bytes:
    """The report body with its findings edited, rebuilt canonically (summary included)."""
    body = parse_report_body(body_bytes)
    return build_report_body(
        pairing=body.pairing,
        as_of=body.as_of,
        root=body.root,
        subordinate=body.subordinate,
        findings=edit(list(body.findings)),
        signers=body.signers,
    )


def signed(body: bytes, key: SigningKey) -> Sig:
    return Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, body)))


def plant(fed: Federation, body: bytes, sig: Sig) -> str:
    """Store a report in the running server's database, as a compromised server would."""
    store = ServerStore(fed.work / "state" / "server.db")
    try:
        rid = report_id(body)
        store.save_report(rid, PAIRING, body, sig)
    finally:
        store.close()
    return rid


def server_key(fed: Federation) -> SigningKey:
    return load_signing_key(fed.work / "keys" / "server.key")


def without(code: str, sha256: str) -> Callable[[list[Finding]], list[Finding]]:
    def edit(findings: list[Finding]) -> list[Finding]:
        kept = [f for f in findings if (f.code, f.sha256) != (code, sha256)]
        assert len(kept) == len(findings) - 1, f"no {code} {sha256} to drop"
        return kept

    return edit


def altered(code: str, sha256: str, **changes: object) -> Callable[[list[Finding]], list[Finding]]:
    def edit(findings: list[Finding]) -> list[Finding]:
        hits = [f for f in findings if (f.code, f.sha256) == (code, sha256)]
        assert len(hits) == 1, f"no single {code} {sha256} to alter"
        return [dataclasses.replace(f, **changes) if f in hits else f for f in findings]  # type: ignore[arg-type]

    return edit


def refusing(*details: str) -> pytest.RaisesExc[ReportError]:
    pattern = re.escape(f"refusing to sign report on pairing {PAIRING!r}: ") + ".*".join(
        re.escape(d) for d in details
    )
    return pytest.raises(ReportError, match=pattern)


def test_both_honest_agents_co_sign_the_servers_report(agents: dict[str, Agent]) -> None:
    for agent in agents.values():
        agent.cosign(pairing_of(agent), wait_seconds=10)
    rid, env = server_report(agents["jprs"])
    assert all(verify_report(env, agent.pins()).complete for agent in agents.values())
    body = parse_report_body(env.payload)
    assert {f.sha256 for f in body.findings if f.code == MISSING} == set(BUG_1695993)
    assert all(agent.store.has_cosigned(rid) for agent in agents.values())


def test_each_agent_builds_the_very_bytes_the_server_process_built(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server process and the agents call one builder: the agent's bytes are the served ones."""
    built: list[bytes] = []

    def recording(**kwargs: Any) -> bytes:
        built.append(build_report(**kwargs))
        return built[-1]

    monkeypatch.setattr("invsync.agent.daemon.report_check.build_report", recording)
    for agent in agents.values():
        _, served = server_report(agent)
        agent._check_report(pairing_of(agent), agent._own_snapshot(PAIRING), served.payload)
        assert built[-1] == served.payload
    assert len(built) == len(agents)


def test_an_agent_that_computes_other_findings_refuses_to_sign_and_says_why(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = BUG_1695993[1]

    def blind(root: Side, sub: Side, at: datetime) -> tuple[Finding, ...]:
        # This agent's reconciler misses one of the two certificates of the incident.
        return tuple(
            f for f in reconcile(root, sub, at) if (f.code, f.sha256) != (MISSING, dropped)
        )

    monkeypatch.setattr("invsync.agent.report.build.reconcile", blind)
    secom = agents["secom"]
    rid, _ = server_report(secom)
    with refusing(f"server lists {MISSING} {dropped} that I do not"):
        secom.cosign(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned(rid)
    monkeypatch.undo()

    # The honest peer still signs; the server holds its signature and the server's, not secom's.
    jprs = agents["jprs"]
    jprs.cosign(pairing_of(jprs), wait_seconds=10)
    _, env = server_report(jprs)
    roles = {r: s.value for r, s in verify_report(env, jprs.pins()).roles.items()}
    assert roles == {"server": "valid", "root": "absent", "subordinate": "valid"}


def test_a_report_signed_by_the_server_key_but_missing_a_finding_is_refused(
    federation: Federation, agents: dict[str, Agent]
) -> None:
    """A compromised server drops one certificate of the incident from the report it serves."""
    secom = agents["secom"]
    real_id, real = server_report(secom)
    dropped = BUG_1695993[0]
    body = forged(real.payload, without(MISSING, dropped))
    rid = plant(federation, body, signed(body, server_key(federation)))
    assert server_report(secom)[0] == rid  # the agent is served the forgery
    with refusing(f"I find {MISSING} {dropped[:16]}", "that server does not list"):
        secom.cosign(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned(rid)
    assert not secom.store.has_cosigned(real_id)
    assert len(server_report(secom)[1].signatures) == 1  # the server's forged signature only


@pytest.mark.parametrize(
    ("edit", "details"),
    [
        (without(MISSING, BUG_1695993[1]), (f"I find {MISSING} {BUG_1695993[1]}",)),
        (
            altered(MISSING, BUG_1695993[0], severity=Severity.NOTICE),
            (f"server and I differ on {MISSING} {BUG_1695993[0]}", "severity 'notice' vs mine"),
        ),
        (
            altered(MISSING, BUG_1695993[1], party="secom"),
            (f"server and I differ on {MISSING} {BUG_1695993[1][:16]}", "party 'secom' vs mine"),
        ),
    ],
    ids=["dropped", "severity", "party"],
)
def test_check_report_names_the_differing_finding(
    federation: Federation,
    agents: dict[str, Agent],
    edit: Callable[[list[Finding]], list[Finding]],
    details: tuple[str, ...],
) -> None:
    for agent in agents.values():
        _, real = server_report(agent)
        own = agent._own_snapshot(PAIRING)
        agent._check_report(pairing_of(agent), own, real.payload)  # the real one passes
        with refusing(*details):
            agent._check_report(pairing_of(agent), own, forged(real.payload, edit))


def test_a_due_date_moved_by_a_day_is_refused(agents: dict[str, Agent]) -> None:
    secom = agents["secom"]
    _, real = server_report(secom)
    findings = parse_report_body(real.payload).findings
    finding = next(f for f in findings if (f.code, f.sha256) == (MISSING, BUG_1695993[0]))
    assert finding.due is not None  # disclosure within 7 days of issuance
    later = finding.due + timedelta(days=1)
    body = forged(real.payload, altered(MISSING, BUG_1695993[0], due=later))
    with refusing(f"server and I differ on {MISSING} {BUG_1695993[0][:16]}", "due "):
        secom._check_report(pairing_of(secom), secom._own_snapshot(PAIRING), body)


def test_a_report_signed_by_another_key_is_not_the_exchange_servers(
    federation: Federation, agents: dict[str, Agent]
) -> None:
    jprs = agents["jprs"]
    _, real = server_report(jprs)
    body = forged(real.payload, without(MISSING, BUG_1695993[0]))
    impostor = generate()
    rid = plant(federation, body, signed(body, impostor))
    assert server_report(jprs)[0] == rid
    message = (
        "refused [bad-server-signature]: the exchange server (report): 0 of 1 required "
        f"signatures verified; signed by untrusted key {impostor.keyid}"
    )
    with pytest.raises(ServerSignatureError, match=f"^{re.escape(message)}$"):
        jprs.cosign(pairing_of(jprs), wait_seconds=10)
    assert not jprs.store.has_cosigned(rid)
    assert len(server_report(jprs)[1].signatures) == 1


def rebuilt(body_bytes: bytes, **changes: Any) -> bytes:
    """The report body with top-level fields replaced, rebuilt canonically."""
    body = parse_report_body(body_bytes)
    fields: dict[str, Any] = {
        "pairing": body.pairing,
        "as_of": body.as_of,
        "root": body.root,
        "subordinate": body.subordinate,
        "findings": body.findings,
        "signers": body.signers,
    }
    fields.update(changes)
    return build_report_body(**fields)


def test_a_report_listing_another_key_as_this_partys_signer_is_refused(
    agents: dict[str, Agent],
) -> None:
    secom = agents["secom"]
    _, real = server_report(secom)
    impostor = generate()
    listed = parse_report_body(real.payload).signers
    swapped = [
        Signer("root", "secom", impostor.keyid, impostor.public.spki_der) if s.role == "root" else s
        for s in listed
    ]
    message = (
        f"refusing to sign report on pairing {PAIRING!r}: it expects a root signature by key "
        f"{impostor.keyid[:16]}, which is not pinned here"
    )
    with pytest.raises(ReportError, match=re.escape(message)):
        secom._check_report(
            pairing_of(secom), secom._own_snapshot(PAIRING), rebuilt(real.payload, signers=swapped)
        )
    dropped = [s for s in listed if s.role != "root"]
    message = (
        f"refusing to sign report on pairing {PAIRING!r}: it does not list our key "
        f"{secom.keys.current.keyid[:16]} as the root's"
    )
    with pytest.raises(ReportError, match=re.escape(message)):
        secom._check_report(
            pairing_of(secom), secom._own_snapshot(PAIRING), rebuilt(real.payload, signers=dropped)
        )


@pytest.mark.parametrize("party", ["secom", "jprs"])
def test_a_report_misstating_the_agents_own_snapshot_version_is_refused(
    agents: dict[str, Agent], party: str
) -> None:
    agent = agents[party]
    _, real = server_report(agent)
    side = pairing_of(agent).role
    ref = getattr(parse_report_body(real.payload), side)
    assert ref.party == party
    body = rebuilt(real.payload, **{side: dataclasses.replace(ref, version=99)})
    message = (
        f"refusing to sign report on pairing {PAIRING!r}: it names the {side} snapshot as "
        f"{party} version 99 ({ref.digest[:16]}), but that snapshot is {party} version 1"
    )
    with pytest.raises(ReportError, match=re.escape(message)):
        agent._check_report(pairing_of(agent), agent._own_snapshot(PAIRING), body)
