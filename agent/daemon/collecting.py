"""The cycle's collection: every configured source read, the stored inventory replaced at once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from invsync.agent.daemon.parts import AgentParts
from invsync.agent.inventory.collect import collect
from invsync.agent.inventory.scope import signed_by_any
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertRecord
from invsync.agent.sources.ct import CT, CT_PRECERT
from invsync.agent.sources.ct_client import CtFetch, log_url
from invsync.agent.sources.detect import AUDIT_SCOPE, CT_LOG, parse_spec
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
        base=Facts.combine([audits, _from_ct_logs(agent)]),
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


def _from_ct_logs(agent: AgentParts) -> Facts:
    """The records the configured CT logs gave in earlier collections, as those logs gave them.

    A fetch returns only the entries after the progress the last collection committed, so
    without these every certificate a log gave would leave the inventory at the next
    collection, as if dropped (and then be nobody's to list). A log never drops an entry: they
    stay while their log is configured and a root key the agent still has signed them (a
    reload may remove a pairing, and with it the key the reader kept them for), their last
    sighting the fetch that gave them."""
    logs = {log_url(url) for url in _ct_log_urls(agent.config.sources)}
    if not logs:
        return Facts()
    held = agent.held if agent.held is not None else agent.store.inventory()
    kept = []
    for record in held:
        sources = tuple(
            source
            for source in record.sources
            if source.kind in (CT, CT_PRECERT) and source.location.rpartition("#")[0] in logs
        )
        if sources:
            kept.append(CertRecord(record.info, sources=sources))
    return Facts(records=tuple(signed_by_any(kept, agent.config.ca_spkis())))


def _ct_log_urls(specs: Iterable[str]) -> list[str]:
    # By the spec alone: detecting a file's kind may read it.
    return [spec.removeprefix(f"{CT_LOG}:") for spec in specs if parse_spec(spec)[0] == CT_LOG]


def _facts(read: Facts | CtFetch) -> Facts:
    return read.facts if isinstance(read, CtFetch) else read
