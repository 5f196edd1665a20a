"""A refusal that is a finding of the pairing: kept and logged before it ends what refused it.

The trusted state (`agent.exchange.trusted`) and the log watch (`agent.daemon.log_watch`) raise
an `UntrustedInput` carrying a finding when what the exchange served contradicts what this agent
verified before (a peer rollback, a log that does not hold together, a split view). The exchange
server will not report those itself, so the agent keeps each in its database (`invsync status`
shows them) and logs it as the reason it signs nothing, then lets the error end the check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from invsync.agent.exchange.rejections import UntrustedInput
from invsync.agent.store.agent_store import AgentStore

log = logging.getLogger("invsync.agent")


@contextmanager
def recording_refusals(
    store: AgentStore, party: str, pairing: str, clock: Callable[[], datetime]
) -> Iterator[None]:
    """Record and log the finding of an `UntrustedInput` raised inside, then re-raise it."""
    try:
        yield
    except UntrustedInput as e:
        if e.finding is not None:
            store.record_refusal(pairing, e.rule, e.finding, clock())
            log.error(
                "party=%s pairing=%s refusing to sign: finding %s: %s",
                party,
                pairing,
                e.finding.code,
                e.finding.message,
                extra={"party": party, "pairing": pairing, "rule": e.rule},
            )
        raise
