"""A refusal that is a finding of the pairing: kept and logged before it ends what refused it.

The trusted state (`agent.exchange.trusted`) and the log watch (`agent.daemon.log_watch`) raise
an `UntrustedInput` carrying a finding when what the exchange served contradicts what this agent
verified before (a peer rollback, a log that does not hold together, a split view). The exchange
server will not report those itself, so the agent keeps each in its database (`invsync status`
shows them), counts it (`invsync_agent_inputs_refused_total`, docs/metrics.md) and logs it as the
reason it signs nothing, then lets the error end the check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from invsync.agent.exchange.rejections import REFUSAL_RULES, UntrustedInput, known_rule
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.telemetry import metrics

log = logging.getLogger("invsync.agent")


def start_refusal_counts(pairings: Iterable[str]) -> None:
    """Export a 0 for every pairing and refusal rule, so that the first refusal is an increase
    an alert sees rather than a series that appears."""
    for pairing in pairings:
        for rule in REFUSAL_RULES:
            metrics.INPUTS_REFUSED.labels(pairing, rule)


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
            # The label set stays bounded: a rule this agent does not know counts as `unknown`.
            metrics.INPUTS_REFUSED.labels(pairing, known_rule(e.rule)).inc()
            log.error(
                "party=%s pairing=%s refusing to sign: finding %s: %s",
                party,
                pairing,
                e.finding.code,
                e.finding.message,
                extra={"party": party, "pairing": pairing, "rule": e.rule},
            )
        raise
