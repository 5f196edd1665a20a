"""One collection: read every source of a party into an assembled inventory (DESIGN §4).

Certificate sources are read first; CRLs last, because a CRL is checked against the issuer
keys this same collection (and the stored inventory) holds. Everything read in a collection is
returned together, so the caller stores it in one transaction or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from agent.assemble import Assembled, assemble
from agent.attribution import Attribution
from agent.facts import Facts, SourceContext
from agent.record import CertInfo, CertRecord
from agent.sources.audit_scope import load_audit_scope
from agent.sources.ccadb import load_ccadb_records
from agent.sources.ccadb_pems import load_ccadb_pem_files, load_ccadb_pems
from agent.sources.crl import load_crl
from agent.sources.csv_log import load_csv_log
from agent.sources.ct import load_ct_entries
from agent.sources.ct_client import CtFetch, commit_ct_progress, fetch_ct_log
from agent.sources.detect import (
    AUDIT_SCOPE,
    CCADB,
    CRL,
    CT,
    CT_LOG,
    DER,
    DIR,
    ISSUANCE_LOG,
    PEM,
    PKCS7,
    detect_kind,
    parse_spec,
)
from agent.sources.issuance_log import load_issuance_log_facts
from agent.sources.pem import load_der_file, load_directory, load_pem_file
from agent.sources.pkcs7 import load_pkcs7
from agent.sources.tabular import csv_header

Reader = Callable[[Path, SourceContext], Facts]


def _records(load: Callable[[Path, datetime], list[CertRecord]]) -> Reader:
    """A reader of the first milestone (records only) as a Facts reader."""
    return lambda path, ctx: Facts(records=tuple(load(path, ctx.now)))


def _issuance_log(path: Path, ctx: SourceContext) -> Facts:
    if path.name.lower().endswith((".csv", ".csv.gz")):
        return load_csv_log(path, ctx)
    return load_issuance_log_facts(path, ctx)


def _ccadb(path: Path, ctx: SourceContext) -> Facts:
    """A CCADB report: the certificate records (V5) or the PEMs, told by the header; a
    directory holds the per-year PEM reports (`.csv` or `.csv.gz`)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))
        return load_ccadb_pem_files(files, ctx)
    header = {name.strip().casefold() for name in csv_header(path)}
    if "x.509 certificate (pem)" in header:
        return load_ccadb_pems(path, ctx)
    return load_ccadb_records(path, ctx)


READERS: dict[str, Reader] = {
    PEM: _records(load_pem_file),
    DER: _records(load_der_file),
    DIR: _records(load_directory),
    ISSUANCE_LOG: _issuance_log,
    PKCS7: load_pkcs7,
    CCADB: _ccadb,
    AUDIT_SCOPE: load_audit_scope,
    CRL: load_crl,
    CT: load_ct_entries,
}


@dataclass(frozen=True)
class Collected:
    assembled: Assembled
    ct_fetches: tuple[CtFetch, ...] = ()  # commit their progress once the import is stored

    def commit_ct_progress(self, state_path: Path) -> None:
        """Call after the collection was stored: the next fetch then starts after it."""
        for fetch in self.ct_fetches:
            commit_ct_progress(state_path, fetch.log_url, fetch.next_index)


def kind_of(spec: str, default: str | None = None) -> str:
    """The kind a spec names (KIND:PATH), else `default`, else what its path looks like."""
    kind, path = parse_spec(spec)
    return kind or default or detect_kind(path)


def read_source(
    spec: str, ctx: SourceContext, *, kind: str | None = None, ct_state: Path | None = None
) -> Facts | CtFetch:
    """The facts of one source (a CtFetch for a live CT log, whose progress the caller commits)."""
    named, path = parse_spec(spec)
    chosen = named or kind or detect_kind(path)
    if chosen == CT_LOG:
        url = spec.removeprefix(f"{CT_LOG}:")
        return fetch_ct_log(url, ctx, state_path=ct_state or Path("ct-progress.json"))
    return READERS[chosen](path, ctx)


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
    return Collected(assemble(everything, issuers=known, attribution=attribution), fetches)
