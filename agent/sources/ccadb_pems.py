"""CCADB's `AllCertificatePEMsCSVFormat` report: every CA certificate disclosed to CCADB, by
fingerprint. Columns `SHA-256 Fingerprint` and `X.509 Certificate (PEM)` (a quoted multi-line
field); CCADB publishes it whole or as one file per notBefore year, plain or `.csv.gz`.

A row's PEM must hash to the row's fingerprint. Some real certificates are refused by
`cryptography` (bad UTCTime, illegal PrintableString characters, an explicitly encoded default):
such a row is an error naming `path:line (fingerprint)`, or with --skip-invalid a Skipped entry
at that location. Rows repeat (within and across files): they become one record whose sources
name every row, and each distinct certificate is parsed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.merge import merge
from invsync.agent.model.record import (
    CertInfo,
    CertRecord,
    SourceRef,
    parse_certificate,
    sha256_hex,
)
from invsync.agent.sources.ccadb import SHA256, fingerprint
from invsync.agent.sources.pem import pem_ders
from invsync.agent.sources.pem_scan import lone_block_der
from invsync.agent.sources.tabular import Row, RowError, Tally, collect, open_table

CCADB_PEM = "ccadb-pem"
PEM = "X.509 Certificate (PEM)"


def load_ccadb_pems(path: Path, ctx: SourceContext) -> Facts:
    """The certificates of one AllCertificatePEMsCSVFormat file, merged by SHA-256."""
    return load_ccadb_pem_files([path], ctx)


def load_ccadb_pem_files(paths: Sequence[Path], ctx: SourceContext) -> Facts:
    """The certificates of several such files (the per-year set) as one merged set of records;
    progress counts rows across all files."""
    certificates = _Certificates(ctx.now)
    tally = Tally(ctx.progress)
    records: list[CertRecord] = []
    skipped: list[Skipped] = []
    for path in paths:
        file_records, file_skipped = _load_file(path, certificates, ctx, tally)
        records += file_records
        skipped += file_skipped
    tally.finish()
    return Facts(records=tuple(merge(records)), skipped=tuple(skipped))


def _load_file(
    path: Path, certificates: _Certificates, ctx: SourceContext, tally: Tally
) -> tuple[list[CertRecord], list[Skipped]]:
    before = tally.done
    with open_table(path) as table:
        table.require((SHA256, PEM))
        rows = ((row.location, row) for row in table.rows)
        result = collect(rows, certificates.record, ctx, tally)
    if tally.done == before:
        raise SourceError(f"{path}: no certificate found (the report has no rows)")
    return result


class _Certificates:
    """Turns rows into records, parsing each distinct certificate once: parsing is the cost."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.parsed: dict[str, CertInfo | ValueError] = {}

    def record(self, row: Row) -> CertRecord:
        cells = row.fields()
        sha = fingerprint(cells[SHA256], row.location)
        where = f"{row.location} ({sha})"
        der = _der(cells[PEM], where)
        actual = sha256_hex(der)
        if actual != sha:
            raise RowError(where, f"the PEM's SHA-256 is {actual}, not the row's fingerprint")
        info = self._info(sha, der, where)
        return CertRecord(info, sources=(SourceRef(CCADB_PEM, row.location, self.now, self.now),))

    def _info(self, sha: str, der: bytes, where: str) -> CertInfo:
        known = self.parsed.get(sha)
        if known is None:
            known = self.parsed[sha] = _parse(der)
        if isinstance(known, ValueError):
            raise RowError(where, f"certificate cannot be parsed: {known}") from known
        return known


def _der(text: str, where: str) -> bytes:
    lone = lone_block_der(text)
    if lone is not None:
        return lone
    try:
        ders = pem_ders(text, lambda _line: where)
    except SourceError as e:  # keep `where` apart from the reason, for --skip-invalid
        raise RowError(where, str(e).removeprefix(f"{where}: ")) from e
    if len(ders) != 1:
        raise RowError(where, f"{PEM} holds {len(ders)} PEM certificates, not 1")
    return ders[0]


def _parse(der: bytes) -> CertInfo | ValueError:
    try:
        return parse_certificate(der)
    except ValueError as e:
        return e
