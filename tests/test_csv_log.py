"""The CSV issuance log, built from the real SECOM/JPRS certificates."""

from __future__ import annotations

import csv
import gzip
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import Revocation, SourceRef
from invsync.agent.sources.csv_log import load_csv_log
from tests.certs import b64_der
from tests.paths import SECOM_JPRS

INDIVIDUAL = SECOM_JPRS / "individual"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
BUG_OV_PEM = (INDIVIDUAL / "JPRS_OV_G3_bug1695993_21C06633.pem").read_text()
BUG_DV_PEM = (INDIVIDUAL / "JPRS_DV_G3_bug1695993_659B7A51.pem").read_text()
PEM_LINES = BUG_OV_PEM.count("\n")  # a PEM cell spans this many more lines than its row's first
NOW = datetime(2021, 3, 1, tzinfo=UTC)
CTX = SourceContext(now=NOW)
HEADER = ["certificate", "operator", "lifecycle", "revoked_at", "revocation_reason"]
KNOWN = "known: certificate, operator, lifecycle, revoked_at, revocation_reason"


def _log(tmp_path: Path, *rows: list[str], name: str = "log.csv") -> Path:
    """A CSV file written by the csv module: PEM cells are quoted and span several lines."""
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _fails(path: Path, message: str) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load_csv_log(path, CTX)


def test_pem_and_base64_der_rows_with_their_view(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        HEADER,
        [BUG_OV_PEM, "jprs", "unused", "2021-03-09T00:00:00Z", "cessation-of-operation"],
        [b64_der(BUG_DV_PEM), "jprs", "in-use", "", ""],
    )
    ov, dv = load_csv_log(path, CTX).records
    assert (ov.sha256, ov.operator, ov.lifecycle) == (BUG_OV, "jprs", "unused")
    revoked = datetime(2021, 3, 9, tzinfo=UTC)
    assert ov.revocation == Revocation(revoked, "cessationOfOperation", f"issuance-log:{path}:2")
    assert (dv.sha256, dv.operator, dv.lifecycle, dv.revocation) == (BUG_DV, "jprs", "in-use", None)
    # The second row starts after the first row's multi-line PEM cell.
    assert dv.sources == (SourceRef("issuance-log", f"{path}:{3 + PEM_LINES}", NOW, NOW),)


def test_columns_in_any_order_and_only_certificate_required(tmp_path: Path) -> None:
    path = _log(tmp_path, ["operator", "certificate"], ["jprs", BUG_OV_PEM])
    [record] = load_csv_log(path, CTX).records
    assert (record.sha256, record.operator, record.lifecycle) == (BUG_OV, "jprs", None)


def test_gzip_compressed_log(tmp_path: Path) -> None:
    plain = _log(tmp_path, ["certificate"], [BUG_OV_PEM])
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(plain.read_bytes()))
    [record] = load_csv_log(path, CTX).records
    assert record.sources[0].location == f"{path}:2"


def test_blank_lines_count_toward_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(f'certificate,operator\n\n,\n"{BUG_OV_PEM}",jprs\n')
    [record] = load_csv_log(path, CTX).records
    assert record.sources[0].location == f"{path}:4"


def test_row_error_names_the_line_where_the_row_starts(tmp_path: Path) -> None:
    path = _log(tmp_path, HEADER[:3], [BUG_OV_PEM, "jprs", "unused"], [BUG_DV_PEM, "", "active"])
    line = 3 + PEM_LINES
    _fails(path, f"{path}:{line}: lifecycle 'active' is not one of in-use, unused, decommissioned")


def test_field_errors_are_the_json_logs(tmp_path: Path) -> None:
    row = [BUG_OV_PEM, "", "", "", "superseded"]
    _fails(_log(tmp_path, HEADER, row), f"{tmp_path / 'log.csv'}:2: revocation_reason given")


def test_skip_invalid_reports_the_bad_rows_and_keeps_the_good(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        ["certificate", "lifecycle"],
        ["not base64!", ""],
        [BUG_OV_PEM, "unused"],
        [BUG_DV_PEM, "active"],
    )
    facts = load_csv_log(path, SourceContext(now=NOW, skip_invalid=True))
    assert [r.sha256 for r in facts.records] == [BUG_OV]
    assert facts.skipped == (
        Skipped(
            f"{path}:2",
            "certificate is neither PEM nor base64 DER (Only base64 data is allowed)",
        ),
        Skipped(
            f"{path}:{4 + PEM_LINES}",
            "lifecycle 'active' is not one of in-use, unused, decommissioned",
        ),
    )


def test_progress_every_500_rows(tmp_path: Path) -> None:
    der = b64_der(BUG_OV_PEM)
    path = _log(tmp_path, ["certificate"], *([der] for _ in range(1001)))
    calls: list[tuple[int, int | None]] = []
    facts = load_csv_log(path, SourceContext(now=NOW, progress=lambda d, t: calls.append((d, t))))
    assert len(facts.records) == 1001
    assert calls == [(500, None), (1000, None), (1001, 1001)]


def test_unknown_column_is_named(tmp_path: Path) -> None:
    path = _log(tmp_path, ["certificate", "opertor"], [BUG_OV_PEM, "jprs"])
    _fails(path, f"{path}:1: unknown column 'opertor' ({KNOWN})")


def test_missing_certificate_column_is_named(tmp_path: Path) -> None:
    path = _log(tmp_path, ["operator", "lifecycle"], ["jprs", "unused"])
    _fails(path, f"{path}:1: missing required column 'certificate'")


def test_header_row_is_required(tmp_path: Path) -> None:
    path = _log(tmp_path, [BUG_OV_PEM, "jprs"])
    _fails(path, f"{path}:1: the first row is not a header (expected columns: certificate, ")


def test_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = _log(tmp_path, ["certificate", "operator", "operator"], [BUG_OV_PEM, "a", "b"])
    _fails(path, f"{path}:1: column 'operator' appears twice")


def test_row_with_too_many_fields(tmp_path: Path) -> None:
    path = _log(tmp_path, ["certificate", "operator"], [BUG_OV_PEM, "jprs", "extra"])
    _fails(path, f"{path}:2: row has 3 fields, the header has 2")


def test_missing_certificate_cell(tmp_path: Path) -> None:
    path = _log(tmp_path, ["certificate", "operator"], ["", "jprs"])
    _fails(path, f"{path}:2: missing required field 'certificate'")


def test_unclosed_quote_is_an_error_not_a_swallowed_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(f'certificate,operator\n"{BUG_OV_PEM}",jprs\n"{BUG_DV_PEM},jprs\n')
    _fails(path, f"{path}:{3 + PEM_LINES}: malformed CSV: unexpected end of data")


def test_header_only_log(tmp_path: Path) -> None:
    path = _log(tmp_path, HEADER)
    _fails(path, f"{path}: no certificate found (the issuance log has no rows)")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("\n")
    _fails(path, f"{path}: file is empty, expected a header row")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"certificate\n\xff\n")
    _fails(path, f"{path}: not UTF-8 text: ")


def test_broken_gzip(tmp_path: Path) -> None:
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(b"certificate\n")[:-6])
    _fails(path, f"{path}: not a valid gzip file: ")
