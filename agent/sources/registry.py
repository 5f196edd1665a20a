"""The one registry of source readers: a kind (`pem`, `ccadb`, `crl`, ...) to the function that
reads a file of that kind into `Facts` (DESIGN §4).

A source spec is a path, or `KIND:PATH` to override detection. Every reader raises SourceError
naming the file (and line) it cannot read, and returns nothing from that source when it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.merge import merge
from invsync.agent.model.record import CertRecord
from invsync.agent.sources.audit_scope import load_audit_scope
from invsync.agent.sources.ccadb import load_ccadb_records
from invsync.agent.sources.ccadb_pems import load_ccadb_pem_files, load_ccadb_pems
from invsync.agent.sources.crl import load_crl
from invsync.agent.sources.csv_log import load_csv_log
from invsync.agent.sources.ct import load_ct_entries
from invsync.agent.sources.ct_client import CtFetch, fetch_ct_log
from invsync.agent.sources.detect import (
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
from invsync.agent.sources.issuance_log import load_issuance_log_facts
from invsync.agent.sources.pem import load_der_file, load_directory, load_pem_file
from invsync.agent.sources.pkcs7 import load_pkcs7
from invsync.agent.sources.tabular import csv_header

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
        files = sorted(p for p in _listing(path) if p.name.endswith((".csv", ".csv.gz")))
        return load_ccadb_pem_files(files, ctx)
    header = {name.strip().casefold() for name in csv_header(path)}
    if "x.509 certificate (pem)" in header:
        return load_ccadb_pems(path, ctx)
    return load_ccadb_records(path, ctx)


def _listing(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except PermissionError as e:
        raise SourceError(f"{path}: cannot list directory: permission denied") from e
    except OSError as e:
        raise SourceError(f"{path}: cannot list directory: {e.strerror or e}") from e


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


def load_source(spec: str, now: datetime) -> list[CertRecord]:
    """The certificate records of one source, merged by SHA-256 and sorted; `now` stamps their
    provenance."""
    facts = read_source(spec, SourceContext(now=now))
    return merge(facts.records if isinstance(facts, Facts) else facts.facts.records)


def load_sources(specs: Iterable[str], now: datetime) -> list[CertRecord]:
    """The records of several sources merged into one inventory (see `model.merge.merge`)."""
    return merge(record for spec in specs for record in load_source(spec, now))
