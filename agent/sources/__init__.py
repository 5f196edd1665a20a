"""Reading certificates from the places a CA already keeps them (DESIGN §4).

A source spec is a path, or `KIND:PATH` to override detection; kinds are `pem`, `der`, `dir`
and `issuance-log`. Every reader raises SourceError naming the file (and line) it cannot read,
and returns nothing from that source when it does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from agent.inventory import merge
from agent.record import CertRecord
from agent.sources.detect import DER, DIR, ISSUANCE_LOG, KINDS, PEM, detect_kind, parse_spec
from agent.sources.issuance_log import load_issuance_log
from agent.sources.pem import load_der_file, load_directory, load_pem_file

__all__ = ["KINDS", "load_source", "load_sources"]

_READERS: dict[str, Callable[[Path, datetime], list[CertRecord]]] = {
    PEM: load_pem_file,
    DER: load_der_file,
    DIR: load_directory,
    ISSUANCE_LOG: load_issuance_log,
}


def load_source(spec: str, now: datetime) -> list[CertRecord]:
    """The records of one source, merged by SHA-256 and sorted; `now` stamps their provenance."""
    kind, path = parse_spec(spec)
    reader = _READERS[kind or detect_kind(path)]
    return merge(reader(path, now))


def load_sources(specs: Iterable[str], now: datetime) -> list[CertRecord]:
    """The records of several sources merged into one inventory (see `agent.inventory.merge`)."""
    return merge(record for spec in specs for record in load_source(spec, now))
