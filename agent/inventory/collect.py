"""One collection: read every source of a party into an assembled inventory (DESIGN §4).

Certificate sources are read first; CRLs last, because a CRL is checked against the issuer
keys this same collection (and the stored inventory) holds. Everything read in a collection is
returned together, so the caller stores it in one transaction or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from invsync.agent.inventory.assemble import Assembled, assemble
from invsync.agent.inventory.attribution import Attribution
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertInfo
from invsync.agent.sources.ct_client import CtFetch, commit_ct_progress
from invsync.agent.sources.detect import CRL
from invsync.agent.sources.registry import kind_of, read_source


@dataclass(frozen=True)
class Collected:
    assembled: Assembled
    ct_fetches: tuple[CtFetch, ...] = ()  # commit their progress once the import is stored

    def commit_ct_progress(self, state_path: Path) -> None:
        """Call after the collection was stored: the next fetch then starts after it."""
        for fetch in self.ct_fetches:
            commit_ct_progress(state_path, fetch.log_url, fetch.next_index)


def collect(
    specs: Sequence[tuple[str, str | None]],
    ctx: SourceContext,
    *,
    known: Sequence[CertInfo] = (),
    attribution: Attribution | None = None,
    ct_state: Path | None = None,
    base: Facts | None = None,
) -> Collected:
    """Read `specs` ((spec, kind or None) pairs) into one assembled inventory.

    `known`: CA certificates already held (the stored inventory), for CRL issuer keys.
    `base`: facts the result builds on, such as the stored records an import adds to.
    """
    crls = [(s, k) for s, k in specs if kind_of(s, k) == CRL]
    others = [(s, k) for s, k in specs if kind_of(s, k) != CRL]
    read = [read_source(s, ctx, kind=k, ct_state=ct_state) for s, k in others]
    fetches = tuple(r for r in read if isinstance(r, CtFetch))
    facts = Facts.combine(r.facts if isinstance(r, CtFetch) else r for r in read)
    issuers = [*known, *(r.info for r in facts.records)]
    crl_ctx = replace(ctx, issuers=issuers)
    crl_facts = [read_source(s, crl_ctx, kind=k) for s, k in crls]
    everything = Facts.combine(
        [base or Facts(), facts, *(f for f in crl_facts if isinstance(f, Facts))]
    )
    assembled = assemble(
        everything, issuers=known, attribution=attribution, root_spkis=ctx.party_ca_spkis
    )
    return Collected(assembled, fetches)
