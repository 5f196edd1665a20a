"""Building and pushing a pairing's next snapshot, and taking the server's receipt for it.

A snapshot is stored as pending before it is pushed and marked sent once the pairing's trusted
state took the server's receipt for it. A pending one, left by a cycle whose receipt was lost, is
re-pushed byte for byte first (the server answers an identical re-push with its stored receipt),
so the next version's previous_digest names the snapshot the server holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from invsync.agent.config.settings import PairingConfig
from invsync.agent.daemon.freshness import PushReason
from invsync.agent.daemon.log_reading import take_receipt
from invsync.agent.daemon.parts import AgentParts
from invsync.agent.daemon.restore import is_behind
from invsync.agent.daemon.server_key_follow import no_known_server_signer
from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import delta, envelope, recent_snapshots
from invsync.agent.exchange.client import Refused
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
    BuildMemo,
    Built,
    build_snapshot,
    decode_payload,
)
from invsync.agent.inventory.scope import root_scope, subordinate_scope
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT
from invsync.agent.store.agent_store import SentSnapshot
from invsync.agent.telemetry import metrics

log = logging.getLogger("invsync.agent")
T = TypeVar("T")


@dataclass(frozen=True)
class Draft:
    """A pairing's next snapshot, built but not yet signed, with what was known to build it."""

    last: SentSnapshot | None  # the latest sent snapshot it follows
    # Payload and whole set (`payload` itself unless a delta on `last`); held until the report
    # check, so that decoding the payload shares the records it was built from (Built.decoded).
    built: Built
    version: int
    expires_at: datetime
    keys: list[SigningKey]  # which of our keys sign it
    announces: bool  # it announces our next signing key
    last_whole: bytes | None  # `last`'s whole set, None if unknown here (SentSnapshot.whole)

    @property
    def payload(self) -> bytes:
        return self.built.payload

    @property
    def full(self) -> bytes:
        return self.built.full

    @property
    def delta(self) -> bool:
        return self.built.delta


@dataclass(frozen=True)
class PushOutcome:
    """The pairing's latest snapshot after `Agent.sync`: pushed now (with why) or kept."""

    version: int
    reason: PushReason | None  # None: the last snapshot was kept
    expires_at: datetime

    @property
    def pushed(self) -> bool:
        return self.reason is not None


def draft(agent: AgentParts, pairing: PairingConfig, now: datetime) -> Draft:
    """The version after the last sent one, from the stored inventory, not yet signed."""
    config = agent.config
    last = agent.store.latest_sent_snapshot(pairing.name)
    last_whole = last.whole if last else None  # parses the payload: once, for both users
    verified = agent.checker.trust(pairing).state.checkpoint
    keys, announce = agent.keys.for_snapshot(last)
    version = (last.version if last else 0) + 1
    expires_at = now + timedelta(seconds=config.snapshot_validity_seconds)
    spkis = pairing.issuer_spkis()
    built = build_snapshot(
        party=config.party,
        pairing=pairing.name,
        role=pairing.role,
        version=version,
        issued_at=now,
        expires_at=expires_at,
        previous_digest=bytes.fromhex(last.payload_sha256) if last else b"",
        scope_issuer_spki=spkis,
        records=_scoped(agent, pairing, spkis),
        profiles=config.profiles,
        acknowledgements=config.acknowledgements,
        next_signing_key=announce,
        log_checkpoint=verified.note if verified else b"",
        # A delta on the last snapshot the server receipted, when its whole set is known here
        # (not after a restore from the log, which brings the signed bytes alone).
        base=last_whole,
        memo=None
        if agent.encodings is None
        else agent.encodings.setdefault(pairing.name, BuildMemo()),
    )
    return Draft(last, built, version, expires_at, keys, bool(announce), last_whole)


def _scoped(agent: AgentParts, pairing: PairingConfig, spkis: list[bytes]) -> list[CertRecord]:
    records = agent.held if agent.held is not None else agent.store.inventory()
    if pairing.role == ROOT:
        return root_scope(
            records,
            issuer_spkis=spkis,
            subordinate=pairing.peer,
            subject_organizations=list(pairing.subject_organizations),
        )
    return subordinate_scope(records, issuer_spkis=spkis)


def send(
    agent: AgentParts,
    pairing: PairingConfig,
    next_one: Draft,
    now: datetime,
    reason: PushReason | None,
) -> PushOutcome:
    """Sign `next_one`, store it as pending, push it and take its receipt."""
    env = envelope.sign(SNAPSHOT_PAYLOAD_TYPE, next_one.payload, next_one.keys)
    agent.store.record_sent_snapshot(
        pairing.name,
        next_one.version,
        next_one.payload,
        env.payload_type,
        [(s.keyid, s.sig) for s in env.signatures],
        now,
        next_one.expires_at,
        pending=True,
        full=next_one.full if next_one.delta else None,
    )
    _push_pending(agent, pairing.name, next_one.version, env, lambda: _meanwhile(agent, next_one))
    party = agent.config.party
    log.info(
        "party=%s pairing=%s pushed version=%d (%s)",
        party,
        pairing.name,
        next_one.version,
        reason.value if reason else "requested",
        extra={"party": party, "pairing": pairing.name, "version": next_one.version},
    )
    metrics.LAST_EXCHANGE.labels(pairing.name).set(time.time())
    return PushOutcome(next_one.version, reason, next_one.expires_at)


def _meanwhile(agent: AgentParts, next_one: Draft) -> None:
    """What the agent does while the server takes its snapshot, instead of only waiting (a
    100,000-record push takes seconds of the server's time, issue 13): keep what the collection
    and the scope derived (100,000 rows take seconds to write), and have the snapshot (as its
    build decoded it, else decoded now) and the one it follows ready for the report check
    (agent.exchange.recent_snapshots keeps them). A snapshot that does not decode is the report
    check's to say."""
    agent.facts.flush(age=False)  # what was read stays for the next pairings' checks
    recent = recent_snapshots.installed()
    if recent is None:  # nothing would keep what is decoded
        return
    try:
        if next_one.built.snapshot is not None:
            recent.put(next_one.built.snapshot)
        else:
            decode_payload(next_one.payload, full=next_one.full if next_one.delta else b"")
        last, previous = next_one.last, next_one.built.previous
        if last is not None and previous is not None and _headed_alike(last.payload, previous.full):
            recent.put(previous)
        elif last is not None and next_one.last_whole is not None:
            last.decoded()
    except InvsyncError:
        pass


def _headed_alike(payload: bytes, whole: bytes) -> bool:
    """Whether a stored payload and the whole set stored beside it carry one header: the
    previous snapshot the build made from the whole set is then the payload's (a damaged row
    is left to the decode, which names what is wrong)."""
    return payload[: delta.header_end(payload)] == whole[: delta.header_end(whole)]


def pushed_meanwhile(push: Callable[[], T], meanwhile: Callable[[], None]) -> T:
    """`push()` on a thread of its own, while this thread (which owns the store's connection)
    does `meanwhile`; push's outcome once both are done. Should `meanwhile` fail, the push
    still ends first: a snapshot whose receipt was not taken stays pending, and is pushed
    again. The thread is a daemon, not waited for when the agent is interrupted."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def pushing() -> None:
        try:
            outcome.append(push())
        except BaseException as e:  # handed to the caller's thread, which raises it
            failure.append(e)

    thread = threading.Thread(target=pushing, name="push", daemon=True)
    thread.start()
    try:
        meanwhile()
    except Exception as e:
        thread.join()
        if failure:
            e.add_note(f"the push failed too: {failure[0]}")
        raise
    thread.join()  # an interrupt (KeyboardInterrupt) while waiting is not held back
    if failure:
        raise failure[0]
    return outcome[0]


def _push_pending(
    agent: AgentParts,
    pairing: str,
    version: int,
    env: Envelope,
    meanwhile: Callable[[], None] = lambda: None,
) -> None:
    """Push, doing `meanwhile` until the server answers; the snapshot is sent once the trusted
    state took the server's receipt for it, which is kept in the same transaction. A refused
    receipt leaves it pending."""
    trust = agent.checker.trust(agent.config.pairings[pairing])
    held = trust.state.checkpoint
    size = held.size if held else 0
    receipt = pushed_meanwhile(lambda: agent.client.push(env, log_size_held=size), meanwhile)
    if no_known_server_signer(receipt, trust):  # the server rotated its key: follow it first
        agent.log_watch.follower.follow(agent.client, trust)
    with trust.staged() as staged:  # adopted in memory once the database took it
        take_receipt(agent.client, staged, receipt, version=version, payload=env.payload)
        agent.store.record_receipt(pairing, version, staged.state, agent.clock())


def resume_pending(agent: AgentParts, pairing: str) -> None:
    """Re-push the pending snapshot, if any; one the server refuses was never accepted."""
    pending = agent.store.pending_snapshot(pairing)
    if pending is None:
        return
    sigs = tuple(Sig(keyid, sig) for keyid, sig in pending.signatures)
    env = Envelope(pending.payload_type, pending.payload, sigs)
    party = agent.config.party
    try:
        _push_pending(agent, pairing, pending.version, env)
    except Refused as e:
        if is_behind(e):
            raise  # the server holds a later version of ours: `sync` restores
        # The server never accepted this version (an identical re-push would be answered
        # with its receipt), so the number is free: the next snapshot is built for it.
        agent.store.drop_pending(pairing, pending.version)
        log.warning(
            "party=%s pairing=%s pending version=%d refused, rebuilt: %s",
            party,
            pairing,
            pending.version,
            e,
        )
        return
    log.info("party=%s pairing=%s re-pushed pending version=%d", party, pairing, pending.version)
