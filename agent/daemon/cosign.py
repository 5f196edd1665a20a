"""Co-signing: the report on our latest snapshot fetched, checked, signed; the settled one written.

What is checked before co-signing is `agent.daemon.report_check`: the agent never takes the
server's word for a report. The exchange's log is checked first (`agent.daemon.log_watch`):
nothing is co-signed while it does not hold together.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from invsync.agent.config.settings import PairingConfig
from invsync.agent.daemon.parts import AgentParts
from invsync.agent.daemon.report_check import PeerArrived
from invsync.agent.daemon.server_key_follow import no_known_server_signer
from invsync.agent.daemon.writing import CycleResult, write_report
from invsync.agent.errors import InvsyncError, ReportError
from invsync.agent.exchange.client import LogAsk, NotFoundYet, PeerHeld
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.trusted import PairingTrust
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, verify_report

log = logging.getLogger("invsync.agent")
POLL_SECONDS = 0.2
# The longest one call waits on the server for a report (it caps it at 20 s too): short enough
# that a server restart or a lost wake-up costs little, long enough to span a report's making.
LONG_POLL_SECONDS = 10

Found = tuple[Envelope, str]  # a report's envelope and its id


def follow_server_key(agent: AgentParts, trust: PairingTrust[Any], env: Envelope) -> None:
    """Before `env` is checked: signed by a server key not known here, follow the server's key
    announcements in its log first (`agent.daemon.server_key_follow`)."""
    if no_known_server_signer(env, trust):
        agent.log_watch.follower.follow(agent.client, trust)


def watch_log(agent: AgentParts, pairing: PairingConfig) -> None:
    """Check the exchange's log for the pairing (`agent.daemon.log_watch`): a log that does
    not hold together is recorded and raised, so nothing is co-signed."""
    agent.log_watch.check(agent.client, agent.checker.trust(pairing))


def cosign(agent: AgentParts, pairing: PairingConfig, wait_seconds: float) -> str:
    """Check the log; wait for the report on our latest snapshot, check it, sign it; its id."""
    own = own_snapshot(agent, pairing.name)
    watch_log(agent, pairing)
    env, rid = _await_report(agent, pairing, own, wait_seconds)
    _cosign_report(agent, pairing, own, env, rid)
    return rid


def settle(agent: AgentParts, pairing: PairingConfig, wait_seconds: float) -> CycleResult:
    """Co-sign each report on our latest snapshot until one carries every signature; write it.

    The peer may push again while we sign, making a newer report on our same snapshot; that
    one is checked and co-signed too, so the cycle ends on the report both parties signed.
    If time runs out, the latest report is written as it stands and `complete` says so.

    Calls (issue 13): the log watch's answer comes with the first report, and a newer report
    with the signature's answer that waited for it, so a steady cycle takes GetReport once and
    SubmitReportSignature once for each report signed.
    """
    own = own_snapshot(agent, pairing.name)
    deadline = time.monotonic() + wait_seconds
    signed = ""  # the report we signed last: the server answers once it is complete, or newer
    found = _first_report(agent, pairing, own, _left(deadline))
    while True:
        if found is not None and not agent.store.has_cosigned(found[1]):
            try:
                now_signed = _cosign_report(agent, pairing, own, *found, wait=_left(deadline))
            except PeerArrived:
                signed = found[1]  # the report on both snapshots is being made: wait for it
            else:
                signed = found[1]
                done = verify_report(now_signed[0], agent.pins()).complete
                if done or time.monotonic() > deadline:  # complete, or as it stands
                    return write_report(agent, pairing.name, signed, now_signed[0])
                found = _report_naming(agent, pairing, own, _left(deadline), past=signed)
                continue
        if found is not None and verify_report(found[0], agent.pins()).complete:
            return write_report(agent, pairing.name, found[1], found[0])
        if found is not None and agent.store.has_cosigned(found[1]):
            signed = found[1]  # signed in an earlier cycle: wait for the rest
        if time.monotonic() > deadline:
            return _timed_out(agent, pairing.name, own, found, wait_seconds)
        time.sleep(POLL_SECONDS)
        found = _report_naming(agent, pairing, own, _left(deadline), past=signed)


def _first_report(
    agent: AgentParts, pairing: PairingConfig, own: Snapshot, wait: int
) -> Found | None:
    """The first report on our snapshot, with the log watch's answer; the watch then runs
    before anything is signed, and runs (asking for itself) when the report call failed."""
    try:
        ask = agent.log_watch.ask(agent.checker.trust(pairing))
        found = _report_naming(agent, pairing, own, wait, log=ask)
    except InvsyncError:
        watch_log(agent, pairing)  # a failed report call does not skip the watch
        raise
    if found is not None:
        agent.checker.prefetch_peer(pairing, found[0])
    watch_log(agent, pairing)
    return found


def own_snapshot(agent: AgentParts, pairing: str) -> Snapshot:
    sent = agent.store.latest_sent_snapshot(pairing)
    if sent is None:
        raise ReportError(f"pairing {pairing!r}: this agent has not pushed a snapshot yet")
    return sent.decoded()


def _cosign_report(
    agent: AgentParts,
    pairing: PairingConfig,
    own: Snapshot,
    env: Envelope,
    rid: str,
    *,
    wait: int = 0,
) -> Found:
    """Sign a report `_report_naming` took from the trusted state, once rebuilt here; the
    report as the server answers it now signed, through the trusted state again. Whoever signs
    last has it complete without asking again, and with `wait` seconds so does the first once
    the rest signed (or a newer report on our snapshot came: then it stands as signed)."""
    agent.checker.check(pairing, own, env.payload)
    key = agent.checker.report_key(pairing.name)
    sig = Sig(key.public.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, env.payload)))
    answer = agent.client.sign_report(
        pairing.name,
        rid,
        sig,
        naming=own.payload_sha256,
        wait_seconds=wait,
        peer=_peer_held(agent, pairing),
    )
    agent.store.record_cosigned(rid, pairing.name, agent.clock())
    log.info("party=%s pairing=%s co-signed report=%s", agent.config.party, pairing.name, rid)
    signed = Envelope.from_pb(answer.envelope)
    trust = agent.checker.trust(pairing)
    follow_server_key(agent, trust, signed)
    trust.verify_report(signed, report_id=rid)
    return signed, rid


def _timed_out(
    agent: AgentParts, pairing: str, own: Snapshot, found: Found | None, wait_seconds: float
) -> CycleResult:
    if found is None:
        raise _no_report(pairing, own, wait_seconds)
    return write_report(agent, pairing, found[1], found[0])


def _await_report(
    agent: AgentParts, pairing: PairingConfig, own: Snapshot, wait_seconds: float
) -> Found:
    deadline = time.monotonic() + wait_seconds
    while True:
        found = _report_naming(agent, pairing, own, _left(deadline))
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise _no_report(pairing.name, own, wait_seconds)
        time.sleep(POLL_SECONDS)


def _no_report(pairing: str, own: Snapshot, wait_seconds: float) -> ReportError:
    return ReportError(
        f"pairing {pairing!r}: no report on our snapshot version {own.header.version} "
        f"after {wait_seconds:.0f} s; has the peer pushed?"
    )


def _left(deadline: float) -> int:
    """Whole seconds of a long poll that end before `deadline` (0: ask without waiting)."""
    return max(0, min(LONG_POLL_SECONDS, int(deadline - time.monotonic())))


def _peer_held(agent: AgentParts, pairing: PairingConfig) -> PeerHeld:
    """What this agent holds of the peer, for a report answer to bring the rest."""
    held = agent.checker.trust(pairing).state.checkpoint
    base = bytes.fromhex(agent.checker.peer_base_digest(pairing.name))
    return PeerHeld(base, held.size if held else 0)


def _report_naming(
    agent: AgentParts,
    pairing: PairingConfig,
    own: Snapshot,
    wait: int = 0,
    *,
    past: str = "",
    log: LogAsk | None = None,
) -> Found | None:
    """The server's latest report if it names our snapshot `own`, waiting up to `wait` seconds
    on the server for one (and, with `past`, for another than that one or for it complete);
    with `log`, the log watch's answer comes with it. The trusted state checks its payload
    type and the pinned server key's signature before the body is parsed."""
    trust = agent.checker.trust(pairing)
    try:
        report = agent.client.report(
            pairing.name,
            naming=own.payload_sha256,
            past=past,
            wait_seconds=wait,
            peer=_peer_held(agent, pairing),
            log=log,
        )
    except NotFoundYet:
        return None
    env = Envelope.from_pb(report.envelope)
    follow_server_key(agent, trust, env)
    body = trust.verify_report(env, report_id=report.report_id)
    ref = body.root if body.root.party == agent.config.party else body.subordinate
    if ref.digest != own.payload_sha256:
        return None
    return env, body.report_id
