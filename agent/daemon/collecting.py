"""The cycle's collection: every configured source read, the stored inventory replaced at once."""

from __future__ import annotations

import logging
from dataclasses import replace

from invsync.agent.daemon.parts import AgentParts
from invsync.agent.inventory.collect import collect
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.sources.ct_client import CtFetch
from invsync.agent.sources.detect import AUDIT_SCOPE
from invsync.agent.sources.reading import source_size_cap
from invsync.agent.sources.registry import read_source

log = logging.getLogger("invsync.agent")


def collect_inventory(agent: AgentParts) -> int:
    """Read every source and replace the stored inventory in one transaction; the record count.

    CT entries signed by any pairing's root CA key belong in the inventory, so every pairing's
    keys are handed to the readers.
    """
    with source_size_cap(agent.config.max_source_bytes):
        return _collect_inventory(agent)


def _collect_inventory(agent: AgentParts) -> int:
    config = agent.config
    now = agent.clock()
    ctx = SourceContext(now=now, party_ca_spkis=config.ca_spkis())
    audits = Facts.combine(
        _facts(read_source(a.spec, replace(ctx, audit=a.audit), kind=AUDIT_SCOPE))
        for a in config.audit_scope
    )
    state = config.database.with_suffix(".ct-progress.json")
    collected = collect(
        [(spec, None) for spec in config.sources],
        ctx,
        attribution=config.attribution,
        ct_state=state,
        base=audits,
    )
    records = collected.assembled.records
    agent.store.replace_inventory(records, now)
    # The snapshots this cycle builds read the inventory as stored: handed over, not read back.
    agent.held = agent.store.as_stored(records)
    collected.commit_ct_progress(state)
    log.info(
        "party=%s collected %d certificates",
        config.party,
        len(records),
        extra={"party": config.party},
    )
    return len(records)


def _facts(read: Facts | CtFetch) -> Facts:
    return read.facts if isinstance(read, CtFetch) else read
