"""Whether a cycle pushes, and after which snapshot of ours: this database's or the log's.

The refresh age (`agent.snapshot_refresh_seconds`) comes before the expiry, so an agent that runs
its cycles keeps a valid snapshot at the server even when nothing changes. When the server holds
a later snapshot of ours than this database (restored from a backup), the chain continues after
it, taken from the log (`agent.daemon.restore`). A cycle that pushes learns it from the server's
refusal (`[rollback]` or `[equivocation]`); one with nothing to push, from the server's latest
report.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from invsync.agent.config.settings import PairingConfig
from invsync.agent.daemon.freshness import PushReason, push_reason
from invsync.agent.daemon.parts import AgentParts
from invsync.agent.daemon.push import PushOutcome, draft, resume_pending, send
from invsync.agent.daemon.restore import is_behind, refused_floor, reported_version
from invsync.agent.exchange.client import Refused

log = logging.getLogger("invsync.agent")


def sync(agent: AgentParts, pairing: PairingConfig) -> PushOutcome:
    """Push the next snapshot of `pairing` if its content changed or the last one ages."""
    try:
        resume_pending(agent, pairing.name)
        return _sync(agent, pairing, restored=False)
    except Refused as e:
        if not is_behind(e):
            raise
        pending = agent.store.pending_snapshot(pairing.name)  # the version refused
        floor = refused_floor(e, pending.version) if pending else 0
        # The refusal is the server's unsigned word: the version its signed latest report names
        # raises the floor, as it would have without a push (one call, only in a restore).
        named = reported_version(agent.client, agent.checker.trust(pairing), pairing.role)
        _restore(agent, pairing, f"the server refused our push: {e}", max(floor, named))
        return _sync(agent, pairing, restored=True)


def _sync(agent: AgentParts, pairing: PairingConfig, *, restored: bool) -> PushOutcome:
    """`sync` once the server's view of our chain is ours: a restored chain always pushes."""
    now = agent.clock()
    next_one = draft(agent, pairing, now)
    last = next_one.last
    reason = (
        PushReason.RESTORED
        if restored
        else push_reason(
            next_one.last_whole,
            last.issued_at if last else None,
            next_one.full,
            now=now,
            refresh_after=timedelta(seconds=agent.config.snapshot_refresh_seconds),
            announces=next_one.announces,
        )
    )
    if last is not None and reason is None:
        # Nothing to push, so no refusal would tell that the server holds a later version
        # of ours than this database (restored from a backup): its latest report may. A push
        # is told by the refusal instead (`sync`), which saves this call on every changed cycle.
        ahead, named = ("", 0) if restored else _reported_ahead(agent, pairing)
        if ahead:
            _restore(agent, pairing, ahead, named)
            return _sync(agent, pairing, restored=True)
        party = agent.config.party
        log.info(
            "party=%s pairing=%s unchanged since version=%d",
            party,
            pairing.name,
            last.version,
            extra={"party": party, "pairing": pairing.name, "version": last.version},
        )
        return PushOutcome(last.version, None, last.expires_at)
    return send(agent, pairing, next_one, now, reason)


def _reported_ahead(agent: AgentParts, pairing: PairingConfig) -> tuple[str, int]:
    """Why this database is behind, when the server's latest report names a version of ours
    it never sent, and that version; ("", 0) otherwise."""
    last = agent.store.latest_sent_snapshot(pairing.name)
    known = last.version if last else 0
    named = reported_version(agent.client, agent.checker.trust(pairing), pairing.role)
    if named <= known:
        return "", 0
    why = f"the server's latest report names our version {named}, this database {known}"
    return why, named


def _restore(agent: AgentParts, pairing: PairingConfig, why: str, floor: int) -> None:
    agent.restorer.restore(agent.client, agent.checker.trust(pairing), why, floor)
