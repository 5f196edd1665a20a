"""The issuance log as CSV: the JSON Lines log's fields as columns, one certificate a row.

A header row is required and names the columns: `certificate` (PEM, in a quoted multi-line field,
or base64 DER) and any of `operator`, `lifecycle`, `revoked_at`, `revocation_reason`, in any
order. An unknown column is an error, since a misspelt one would silently drop
its data. Each row is read exactly as a JSON Lines entry (`issuance_log.log_record`), an empty
cell meaning "not given"; errors name `path:line`, the line where the row starts.
"""

from __future__ import annotations

from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertRecord
from invsync.agent.sources.issuance_log import FIELDS, log_record
from invsync.agent.sources.tabular import Row, Table, Tally, collect, open_table

_REQUIRED = "certificate"


def load_csv_log(path: Path, ctx: SourceContext) -> Facts:
    """Every row of a CSV issuance log as a record (see the module docstring)."""
    tally = Tally(ctx.progress)
    with open_table(path) as table:  # read row by row: it holds the records, not the file
        _check_header(table)
        rows = ((row.location, row) for row in table.rows)
        records, skipped = collect(rows, lambda row: _record(row, ctx), ctx, tally)
    tally.finish()
    if tally.done == 0:
        raise SourceError(f"{path}: no certificate found (the issuance log has no rows)")
    return Facts(records=tuple(records), skipped=tuple(skipped))


def _check_header(table: Table) -> None:
    """The header must name FIELDS only, `certificate` among them (open_table refused twins)."""
    where, header = table.header_location, table.header
    if not set(header) & set(FIELDS):
        known = ", ".join(FIELDS)
        raise SourceError(f"{where}: the first row is not a header (expected columns: {known})")
    unknown = [name for name in header if name not in FIELDS]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise SourceError(f"{where}: unknown column {names} (known: {', '.join(FIELDS)})")
    table.require([_REQUIRED])


def _record(row: Row, ctx: SourceContext) -> CertRecord:
    cells = row.fields().items()
    entry = {name: value.strip() for name, value in cells if value.strip()}
    return log_record(entry, row.location, ctx.now)
