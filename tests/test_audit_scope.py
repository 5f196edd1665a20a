"""Audit scope lists: Sectigo's real CSV, text in every spelling, and a generated PDF statement
whose table lists the real JPRS G3/G4 fingerprints."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, Skipped
from invsync.agent.model.record import CertInfo, parse_certificate
from invsync.agent.sources.audit_scope import (
    load_audit_csv,
    load_audit_pdf,
    load_audit_scope,
    load_audit_text,
)
from tests.paths import FIXTURES
from tests.pdf_writer import Cell, pdf

SECTIGO = FIXTURES / "audit" / "sectigo_20220401_AllRootsAndIntermediatesForSectigoAudit.csv"
JPRS_PEM = FIXTURES / "secom_jprs" / "jprs_intermediates_all_generations.pem"
NOW = datetime(2022, 6, 1, tzinfo=UTC)
UNKNOWN = AuditPeriod("", None, None)
WEBTRUST = AuditPeriod("WebTrust CA", date(2021, 4, 2), date(2022, 4, 1), date(2022, 6, 28))
FLAG_COLUMNS = ("WTCA?", "WTBRSSL?", "WTEVSSL?", "WTPTCS?", "WTEVCS?")

AAA_ROOT = "D7A7A0FB5D7E2731D771E9484EBCDEF71D5F0C3E0A2948782BC83EE0EA699EF4"
TRUSTASIA_ECC_DV = "5251E2A5B3A42021667994B04E195B693B9B71B752267C44DC310A77979BDC00"
TRUSTASIA_ECC_EV = "0D4D3A2F6DAC222175BA1DF78B4817B469095BF02F47919512353115902265FB"
TRUSTASIA_ECC_EMAIL = "9ACA5C9670937BC1DC3DE4DD0A75D2A86214549C572D50FFD3F8C8430ECAF1A7"


def _ctx(audit: AuditPeriod | None = None, *, skip_invalid: bool = False) -> SourceContext:
    return SourceContext(now=NOW, audit=audit, skip_invalid=skip_invalid)


def _fingerprints(facts: Facts) -> list[str]:
    return [entry.sha256 for entry in facts.audit_scope]


def _fails(loader: object, path: Path, message: str) -> None:
    assert callable(loader)
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        loader(path, _ctx())


def _jprs(generation: str) -> list[CertInfo]:
    """The real JPRS DV and OV certificates of one generation ("G3" or "G4"), file order."""
    certs = x509.load_pem_x509_certificates(JPRS_PEM.read_bytes())
    infos = [parse_certificate(c.public_bytes(serialization.Encoding.DER)) for c in certs]
    return [
        info for info in infos if info.subject.startswith("CN=JPRS") and generation in info.subject
    ]


# --- CSV: Sectigo's published list ----------------------------------------------------------


def _sectigo_rows() -> list[dict[str, str]]:
    with SECTIGO.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def test_sectigo_list_has_542_fingerprints_in_file_order() -> None:
    facts = load_audit_csv(SECTIGO, _ctx(WEBTRUST))
    rows = _sectigo_rows()
    assert len(facts.audit_scope) == 542
    assert _fingerprints(facts) == [row["SHA-256(Certificate)"] for row in rows]
    assert {entry.audit for entry in facts.audit_scope} == {WEBTRUST}
    assert facts.skipped == ()


def test_sectigo_flag_counts_match_the_csv_module() -> None:
    # Sectigo writes the scheme's name for yes ("BRSSL" under "WTBRSSL?") and "n/a" for no.
    expected = Counter(
        column.rstrip("?")
        for row in _sectigo_rows()
        for column in FLAG_COLUMNS
        if row[column] != "n/a"
    )
    facts = load_audit_csv(SECTIGO, _ctx())
    counted = Counter(flag for entry in facts.audit_scope for flag in entry.flags)
    assert counted == expected
    assert counted == {"WTCA": 542, "WTBRSSL": 387, "WTEVSSL": 183, "WTPTCS": 104, "WTEVCS": 104}


def test_sectigo_known_rows_their_flags_and_lines() -> None:
    path = SECTIGO
    by_sha = {entry.sha256: entry for entry in load_audit_csv(path, _ctx()).audit_scope}
    # Line 2 is the first data row; its Subject DN spans 5 lines, so the next row starts on 7.
    assert by_sha[AAA_ROOT] == AuditScopeEntry(
        AAA_ROOT,
        UNKNOWN,
        f"audit-scope:{path}:2",
        ("WTCA", "WTBRSSL", "WTEVSSL", "WTPTCS", "WTEVCS"),
    )
    assert by_sha[TRUSTASIA_ECC_DV].flags == ("WTCA", "WTBRSSL")
    assert by_sha[TRUSTASIA_ECC_DV].source == f"audit-scope:{path}:7"
    assert by_sha[TRUSTASIA_ECC_EV].flags == ("WTCA", "WTBRSSL", "WTEVSSL")
    assert by_sha[TRUSTASIA_ECC_EMAIL].flags == ("WTCA",)


def test_the_same_list_read_as_text_gives_the_same_fingerprints() -> None:
    # The rows hold serials (up to 40 hex digits), key ids (40), dates and "CA": none of them
    # makes a fingerprint, nor joins one across the multi-line Subject DN fields.
    text = load_audit_text(SECTIGO, _ctx())
    assert _fingerprints(text) == _fingerprints(load_audit_csv(SECTIGO, _ctx()))
    assert text.skipped == ()
    assert text.audit_scope[1].source == f"audit-scope:{SECTIGO}:9"  # the row starts on 7


# --- CSV: other headers, other flag spellings, bad rows --------------------------------------


def _write(tmp_path: Path, text: str, name: str = "scope.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "column",
    ["SHA-256 Fingerprint", "SHA256", "sha256 thumbprint", "SHA-256(Certificate)", "Cert SHA256"],
)
def test_the_fingerprint_column_is_found_by_its_header(tmp_path: Path, column: str) -> None:
    path = _write(tmp_path, f"Name,{column}\nAAA,{AAA_ROOT.lower()}\n")
    assert _fingerprints(load_audit_csv(path, _ctx())) == [AAA_ROOT]


def test_a_spki_hash_column_is_not_the_certificate_fingerprint(tmp_path: Path) -> None:
    # CCADB's reports have both; only the certificate's fingerprint is an identity.
    spki = "Subject + SPKI SHA256"
    path = _write(tmp_path, f"{spki},SHA-256 Fingerprint\n{'0' * 64},{AAA_ROOT}\n")
    assert _fingerprints(load_audit_csv(path, _ctx())) == [AAA_ROOT]


@pytest.mark.parametrize(
    ("cells", "flags"),
    [
        ("Y,N", ("WTCA",)),
        ("Yes,no", ("WTCA",)),
        ("TRUE,false", ("WTCA",)),
        ("x,", ("WTCA",)),
        (",X", ("WTBRSSL",)),
        ("CA,BRSSL", ("WTCA", "WTBRSSL")),
        ("n/a,N/A", ()),
    ],
)
def test_flag_spellings(tmp_path: Path, cells: str, flags: tuple[str, ...]) -> None:
    path = _write(tmp_path, f"SHA-256 Fingerprint,WTCA?,WTBRSSL?\n{AAA_ROOT},{cells}\n")
    assert load_audit_csv(path, _ctx()).audit_scope[0].flags == flags


def test_a_flag_value_that_is_neither_yes_nor_no_is_a_row_error(tmp_path: Path) -> None:
    path = _write(tmp_path, f"SHA-256 Fingerprint,WTCA?\n{AAA_ROOT},maybe\n")
    _fails(load_audit_csv, path, f"{path}:2: WTCA? 'maybe' is neither yes")


def test_no_fingerprint_column_names_the_header(tmp_path: Path) -> None:
    path = _write(tmp_path, f"Subject DN,SHA-1 Fingerprint\nX,{'AB' * 20}\n")
    _fails(
        load_audit_csv,
        path,
        f"{path}:1: no SHA-256 fingerprint column in the header"
        " ('Subject DN', 'SHA-1 Fingerprint')",
    )


def test_two_fingerprint_columns_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, f"SHA256,SHA-256 Fingerprint\n{AAA_ROOT},{AAA_ROOT}\n")
    _fails(load_audit_csv, path, f"{path}:1: several SHA-256 fingerprint columns: 'SHA256'")


def _with_bad_row(tmp_path: Path) -> Path:
    # The bad row's quoted Subject DN spans two lines: the next row starts on line 6.
    return _write(
        tmp_path,
        "Subject DN,SHA-256(Certificate)\n"
        f"AAA,{AAA_ROOT}\n"
        f'"CN=Cut\nO=Short",{TRUSTASIA_ECC_DV[:60]}\n'
        f"DV,{TRUSTASIA_ECC_DV}\n",
    )


def test_a_malformed_fingerprint_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = _with_bad_row(tmp_path)
    _fails(
        load_audit_csv,
        path,
        f"{path}:3: SHA-256(Certificate) '{TRUSTASIA_ECC_DV[:60]}' is not a SHA-256 fingerprint",
    )


def test_skip_invalid_reports_the_bad_row_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _with_bad_row(tmp_path)
    facts = load_audit_csv(path, _ctx(skip_invalid=True))
    assert _fingerprints(facts) == [AAA_ROOT, TRUSTASIA_ECC_DV]
    assert facts.audit_scope[1].source == f"audit-scope:{path}:5"
    reason = (
        f"SHA-256(Certificate) '{TRUSTASIA_ECC_DV[:60]}'"
        " is not a SHA-256 fingerprint (64 hex digits)"
    )
    assert facts.skipped == (Skipped(f"{path}:3", reason),)


def test_a_short_row_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, f"SHA-256 Fingerprint,WTCA?\n{AAA_ROOT}\n")
    _fails(load_audit_csv, path, f"{path}:2: row has 1 fields, the header has 2")


def test_a_listed_twice_fingerprint_is_one_entry_with_every_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, f"SHA256,WTCA?,WTBRSSL?\n{AAA_ROOT},Y,N\n{AAA_ROOT.lower()},N,Y\n")
    facts = load_audit_csv(path, _ctx())
    assert facts.audit_scope == (
        AuditScopeEntry(AAA_ROOT, UNKNOWN, f"audit-scope:{path}:2", ("WTCA", "WTBRSSL")),
    )


def test_a_csv_with_only_a_header_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "SHA-256 Fingerprint\n")
    _fails(load_audit_csv, path, f"{path}: no SHA-256 fingerprint found (the CSV has no data rows)")


def test_a_csv_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"SHA256,Sujet\n" + AAA_ROOT.encode() + ",Cr\xe9\n".encode("latin-1"))
    _fails(load_audit_csv, path, f"{path}: not UTF-8 text:")


# --- text -----------------------------------------------------------------------------------


def _pairs(sha256: str, separator: str) -> str:
    return separator.join(sha256[i : i + 2] for i in range(0, 64, 2))


def test_every_spelling_of_a_fingerprint_in_text(tmp_path: Path) -> None:
    g3 = [info.sha256 for info in _jprs("G3")]
    assert len(g3) == 6
    wrapped = g3[5].lower()
    text = "\n".join(
        [
            "In scope of the audit:",  # 1
            f"  {g3[0]}  (upper case)",  # 2
            f"{g3[1].lower()}",  # 3
            f"OV G3: {_pairs(g3[2], ':')}",  # 4
            f"DV G3 - {_pairs(g3[3].lower(), ' ')} - issued 2019-07-11",  # 5
            f"SHA-256: {_pairs(g3[4], ':')[:47]}",  # 6, wrapped after 16 byte pairs
            f"{_pairs(g3[4], ':')[48:]}",  # 7
            f"Thumbprint {wrapped[:40]}",  # 8, wrapped after 40 digits
            f"{wrapped[40:]} (continued)",  # 9
        ]
    )
    path = _write(tmp_path, text, "statement.txt")
    facts = load_audit_text(path, _ctx(WEBTRUST))
    assert _fingerprints(facts) == g3
    lines = [entry.source.rsplit(":", 1)[1] for entry in facts.audit_scope]
    assert lines == ["2", "3", "4", "5", "6", "8"]
    assert {entry.audit for entry in facts.audit_scope} == {WEBTRUST}


def test_short_hex_is_ignored(tmp_path: Path) -> None:
    ski = "A0110A233E96F107ECE2AF29EF82A57FD030A4B4"  # 40 digits: a key id or a SHA-1
    text = f"Serial 00D21ADFBDC3C45772BDF698B2BAD8FB0D\nSKI {ski}\n{AAA_ROOT}\nCA DE 2022-04-01\n"
    path = _write(tmp_path, text, "scope.txt")
    facts = load_audit_text(path, _ctx())
    assert _fingerprints(facts) == [AAA_ROOT]
    assert facts.skipped == ()


def test_a_date_or_a_word_never_joins_a_wrapped_fingerprint(tmp_path: Path) -> None:
    # "2020" (4 digits) + 60 digits would make 64; a short unit inside a line is no head.
    text = f"Issued in 2020 by CA\nKey hash: {AAA_ROOT[4:]} (truncated)\n{TRUSTASIA_ECC_DV}\n"
    path = _write(tmp_path, text, "scope.txt")
    assert _fingerprints(load_audit_text(path, _ctx())) == [TRUSTASIA_ECC_DV]


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        (AAA_ROOT + TRUSTASIA_ECC_DV, 128),  # two fingerprints glued, or a SHA-512
        (AAA_ROOT + "0", 65),
        ("C=DE " + _pairs(AAA_ROOT, " "), 66),  # a hex word before spaced pairs
    ],
)
def test_a_longer_hex_run_is_not_a_fingerprint(tmp_path: Path, text: str, digits: int) -> None:
    path = _write(tmp_path, f"{TRUSTASIA_ECC_DV}\n{text}\n", "scope.txt")
    reason = (
        f"a run of {digits} hex digits is longer than a SHA-256 fingerprint (64) and is not taken"
        " as one; separate the fingerprint from its neighbours"
    )
    _fails(load_audit_text, path, f"{path}:2: {reason}")
    facts = load_audit_text(path, _ctx(skip_invalid=True))
    assert _fingerprints(facts) == [TRUSTASIA_ECC_DV]
    assert facts.skipped == (Skipped(f"{path}:2", reason),)


def test_a_tail_that_could_end_two_heads_is_ambiguous(tmp_path: Path) -> None:
    text = f"{AAA_ROOT[:40]} {TRUSTASIA_ECC_DV[:40]}\n{AAA_ROOT[40:]}\n"
    path = _write(tmp_path, text, "scope.txt")
    _fails(
        load_audit_text,
        path,
        f"{path}:2: 24 hex digits could end any of 2 hex runs of the line before",
    )


def test_text_without_a_fingerprint_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "This statement lists no certificate.\n", "empty.txt")
    _fails(load_audit_text, path, f"{path}: no SHA-256 fingerprint found")


# --- PDF ------------------------------------------------------------------------------------

COLUMNS = (40, 300, 620, 690)  # Subject DN | SHA-256 Thumbprint | Valid From | Valid To


def _row(y: float, info: CertInfo, thumbprint: str, tail: str = "") -> list[Cell]:
    """A table row: the Subject DN wraps after its CN; a `tail` wraps the thumbprint too."""
    cn, rest = info.subject.split(",", 1)
    x_dn, x_sha, x_from, x_to = COLUMNS
    cells: list[Cell] = [
        (x_dn, y, cn + ","),
        (x_sha, y, thumbprint),
        (x_from, y, info.not_before.date().isoformat()),
        (x_to, y, info.not_after.date().isoformat()),
        (x_dn, y - 8, rest.replace("\\,", ",")),
    ]
    if tail:
        cells.append((x_sha, y - 8, tail))
    return cells


def _statement_pdf(tmp_path: Path) -> tuple[Path, list[str]]:
    """A two-page audit statement: prose on page 1, the in-scope CA table on page 2."""
    infos = _jprs("G3") + _jprs("G4")
    assert len(infos) == 8
    prose: list[Cell] = [
        (40, 550, "Independent Assurance Report - WebTrust Principles and Criteria for CAs"),
        (40, 535, "Period: 2020-04-01 to 2021-03-31. Report hash (SHA-1):"),
        (40, 527, "a0110a233e96f107ece2af29ef82a57fd030a4b4"),
    ]
    titles = ("Subject DN", "SHA-256 Thumbprint", "Valid From", "Valid To")
    table: list[Cell] = [(x, 560, title) for x, title in zip(COLUMNS, titles, strict=True)]
    spellings: list[Callable[[str], tuple[str, str]]] = [
        lambda s: (s, ""),
        lambda s: (s.lower(), ""),
        lambda s: (_pairs(s.lower(), " "), ""),
        lambda s: (_pairs(s, ":"), ""),
        lambda s: (s.lower()[:40], s.lower()[40:]),  # wrapped in its cell
        lambda s: (_pairs(s, " ")[:59], _pairs(s, " ")[60:]),  # wrapped after 20 byte pairs
        lambda s: (s[:33], s[33:]),
        lambda s: (s, ""),
    ]
    for number, (info, spell) in enumerate(zip(infos, spellings, strict=True)):
        table += _row(540 - 20 * number, info, *spell(info.sha256))
    path = tmp_path / "statement.pdf"
    path.write_bytes(pdf([prose, table]))
    return path, [info.sha256 for info in infos]


def test_a_pdf_statement_gives_exactly_its_tables_fingerprints(tmp_path: Path) -> None:
    path, expected = _statement_pdf(tmp_path)
    facts = load_audit_pdf(path, _ctx(WEBTRUST))
    assert _fingerprints(facts) == expected
    assert {entry.source for entry in facts.audit_scope} == {f"audit-scope:{path}:page 2"}
    assert facts.skipped == ()


def test_pdf_progress_is_per_page(tmp_path: Path) -> None:
    path, _ = _statement_pdf(tmp_path)
    calls: list[tuple[int, int | None]] = []
    ctx = SourceContext(now=NOW, progress=lambda done, total: calls.append((done, total)))
    load_audit_pdf(path, ctx)
    assert calls == [(1, 2), (2, 2)]


def test_a_broken_pdf_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not a PDF body\n")
    _fails(load_audit_pdf, path, f"{path}: not a readable PDF: ")


def test_a_pdf_without_fingerprints_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "letter.pdf"
    path.write_bytes(pdf([[(40, 550, "Dear auditor, please find the list attached.")]]))
    _fails(load_audit_pdf, path, f"{path}: no SHA-256 fingerprint found (in the text extracted")


# --- one entry point for the three forms ------------------------------------------------------


def test_load_audit_scope_picks_the_form(tmp_path: Path) -> None:
    pdf_path, expected = _statement_pdf(tmp_path)
    renamed = pdf_path.rename(tmp_path / "statement.csv")  # the magic bytes win over the name
    assert _fingerprints(load_audit_scope(renamed, _ctx())) == expected
    csv_flags = load_audit_scope(SECTIGO, _ctx()).audit_scope[0].flags
    assert csv_flags == ("WTCA", "WTBRSSL", "WTEVSSL", "WTPTCS", "WTEVCS")
    text = _write(tmp_path, f"WTCA? {AAA_ROOT}\n", "scope.txt")
    assert load_audit_scope(text, _ctx()).audit_scope[0].flags == ()
