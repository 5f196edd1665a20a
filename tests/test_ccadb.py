"""CCADB's reports, on real CCADB data (tests/fixtures/ccadb/PROVENANCE.md).

`AllCertificateRecordsCSVFormatV5`: 26 real rows (SECOM, JPRS, one A-Trust root).
`AllCertificatePEMsCSVFormat`: the full per-year set, 33 gzip-compressed files.
"""

from __future__ import annotations

import base64
import csv
import gzip
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from cryptography import x509

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import CcadbAudit, Disclosure, Skipped
from invsync.agent.model.record import SourceRef
from invsync.agent.sources.ccadb import load_ccadb_records, normalize_owner
from invsync.agent.sources.ccadb_pems import load_ccadb_pem_files, load_ccadb_pems
from tests.paths import FIXTURES

V5 = FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv"
PEMS = sorted((FIXTURES / "ccadb" / "pems").glob("AllCertificatePEMsCSVFormat_*.csv.gz"))
INDIVIDUAL = FIXTURES / "secom_jprs" / "individual"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
BUG_OV_PEM = (INDIVIDUAL / "JPRS_OV_G3_bug1695993_21C06633.pem").read_text()
NOW = datetime(2026, 8, 1, tzinfo=UTC)
CTX = SourceContext(now=NOW)
SKIP = SourceContext(now=NOW, skip_invalid=True)
WEBTRUST = "https://www.cpacanada.ca/api/getPDFWebTrust?attachmentId="
Reader = Callable[[Path, SourceContext], Facts]
# Some real certificates make `cryptography` warn (65-character names, UTF-8 in VisibleString).
quiet = pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore::cryptography.utils.CryptographyDeprecationWarning"
)


def _fails(load: Reader, path: Path, message: str, ctx: SourceContext = CTX) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load(path, ctx)


# --- AllCertificateRecordsCSVFormatV5 -------------------------------------------------------


def _v5() -> dict[str, Disclosure]:
    return {d.sha256: d for d in load_ccadb_records(V5, CTX).disclosures}


def _v5_copy(tmp_path: Path, drop: str = "", add: dict[str, dict[str, str]] | None = None) -> Path:
    """The fixture without column `drop`, plus columns `add` ({column: {sha256: value}})."""
    with V5.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    add = add or {}
    header = [c for c in rows[0] if c != drop] + list(add)
    path = tmp_path / "records.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            extra = {c: values.get(row["SHA-256 Fingerprint"], "") for c, values in add.items()}
            writer.writerow([{**row, **extra}[c] for c in header])
    return path


def test_v5_one_disclosure_per_row_named_by_its_starting_line() -> None:
    disclosures = load_ccadb_records(V5, CTX).disclosures
    assert len(disclosures) == 26
    by_sha = {d.sha256: d for d in disclosures}
    assert len(by_sha) == 26
    assert by_sha["8AC552AD577E37AD2C6808D72AA331D6A96B4B3FEBFF34CE9BC0578E08055EC3"].source == (
        f"{V5}:2"
    )
    # Row 19 has a two-line quoted field, so the next row starts on line 22, not 21.
    assert by_sha["B723273A3506C6BED85F083DA562734BE09F2C47ADE47317831D63AA8BE278A5"].source == (
        f"{V5}:22"
    )


def test_v5_the_bugs_revoked_pair() -> None:
    by_sha = _v5()
    for sha in (BUG_OV, BUG_DV):
        d = by_sha[sha]
        assert (d.ca_owner, d.subordinate_ca_owner) == ("SECOM Trust Systems CO., LTD.", "JPRS")
        assert (d.record_type, d.revocation_status) == ("Intermediate Certificate", "Revoked")
        assert (d.revocation_date, d.revocation_reason) == (None, "")  # V5 has no such column
        assert d.technically_constrained is False


def test_v5_subordinate_ca_owner_of_the_jprs_rows() -> None:
    owners = Counter(d.subordinate_ca_owner for d in _v5().values())
    assert owners == {
        "": 12,
        "JPRS": 6,
        "Japan Registry Services Co., Ltd.": 6,
        "SECOM Trust Systems CO., LTD.": 1,
        "Cybertrust Japan Co., Ltd.": 1,
    }


def test_v5_revocation_statuses() -> None:
    statuses = Counter(d.revocation_status for d in _v5().values())
    assert statuses == {"Revoked": 12, "Not Revoked": 8, "": 6}


def test_v5_audits_of_the_bug_certificate() -> None:
    period = (date(2022, 4, 15), date(2021, 1, 28), date(2022, 1, 27))
    assert _v5()[BUG_OV].audits == (
        CcadbAudit(
            "standard", WEBTRUST + "85ed55c3-ae53-4810-82d6-51a8dd966d1d", "WebTrust", *period
        ),
        CcadbAudit("br", WEBTRUST + "f174bd9a-ac88-4fc5-b0f4-fba540e84f30", "WebTrust", *period),
    )


def test_v5_every_audit_kind_of_a_root() -> None:
    root_ca2 = _v5()["513B2CECB810D4CDE5DD85391ADFC6C2DD60D87BB736D2B521484AA47A0EBEF6"]
    kinds = [a.kind for a in root_ca2.audits]
    assert kinds == ["standard", "netsec", "br", "ev-ssl", "code-signing", "smime"]
    netsec = root_ca2.audits[1]
    assert (netsec.statement_date, netsec.period_end) == (date(2026, 8, 27), date(2026, 6, 6))


def test_v5_inherited_audits_are_none() -> None:
    # "Audits Same as Parent" rows leave every audit column empty.
    assert _v5()["DB2F0194EDCB78CBA9D1BAF4C3DBA8D56837D97B20233D617DD50B713BD313C8"].audits == ()


def test_v5_derived_trust_bits() -> None:
    by_sha = _v5()
    g4 = by_sha["801C522D3AD138E4F05D467EA369C1CC276078BF284018D0525EBBBC5342C836"]
    ecc = by_sha["9C280369D072F89D9C9B62640BBF2F28D2F30ECEE9759854031D5C5C53E8D1B6"]
    assert g4.derived_trust_bits == ("Server Authentication",)
    assert ecc.derived_trust_bits == ("Client Authentication", "Server Authentication")
    assert by_sha[BUG_OV].derived_trust_bits == ()


def test_v5_both_spellings_of_secom_are_one_owner() -> None:
    owners = {d.ca_owner for d in _v5().values()}
    assert owners == {"A-Trust", "SECOM Trust Systems CO., LTD.", "SECOM Trust Systems Co., Ltd."}
    assert {normalize_owner(o) for o in owners} == {"a trust", "secom trust systems"}


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("SECOM Trust Systems CO., LTD.", "secom trust systems"),
        ("SECOM Trust Systems Co., Ltd.", "secom trust systems"),
        ("  secom   trust systems co ltd ", "secom trust systems"),
        ("Japan Registry Services Co., Ltd.", "japan registry services"),
        ("JPRS", "jprs"),  # an abbreviation is another name, not another spelling
        ("DigiCert, Inc.", "digicert"),
        ("D-TRUST GmbH", "d trust"),
        ("Inc.", "inc"),  # a suffix alone is the whole name
        ("Trust Co", "trust co"),  # "Co" alone is not stripped
        ("TÜRKTRUST Bilgi İletişim", "turktrust bilgi iletisim"),  # accents are spellings too
        ("Turktrust Bilgi Iletisim", "turktrust bilgi iletisim"),
    ],
)
def test_normalize_owner(name: str, key: str) -> None:
    assert normalize_owner(name) == key


def test_v5_missing_required_column_is_named(tmp_path: Path) -> None:
    path = _v5_copy(tmp_path, drop="Revocation Status")
    _fails(load_ccadb_records, path, f"{path}:1: missing required column 'Revocation Status'")


def test_v5_every_missing_required_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text(f"CA Owner,Certificate Name\nSECOM,{BUG_OV}\n")
    missing = "'SHA-256 Fingerprint', 'Revocation Status', 'Certificate Record Type'"
    _fails(load_ccadb_records, path, f"{path}:1: missing required columns {missing}")


def test_v5_extra_unknown_column_is_fine(tmp_path: Path) -> None:
    path = _v5_copy(tmp_path, add={"Comment": {BUG_OV: "the bug"}})
    assert len(load_ccadb_records(path, CTX).disclosures) == 26


@pytest.mark.parametrize(
    ("column", "value"), [("Revocation Date", "2021.03.09"), ("Date of Revocation", "2021-03-09")]
)
def test_v5_revocation_date_when_the_report_has_one(
    tmp_path: Path, column: str, value: str
) -> None:
    path = _v5_copy(tmp_path, add={column: {BUG_OV: value}})
    by_sha = {d.sha256: d for d in load_ccadb_records(path, CTX).disclosures}
    assert by_sha[BUG_OV].revocation_date == date(2021, 3, 9)
    assert by_sha[BUG_DV].revocation_date is None


def test_v5_revocation_reason_when_the_report_has_one(tmp_path: Path) -> None:
    path = _v5_copy(tmp_path, add={"RFC 5280 Revocation Reason Code": {BUG_OV: "(4) superseded"}})
    by_sha = {d.sha256: d for d in load_ccadb_records(path, CTX).disclosures}
    assert (by_sha[BUG_OV].revocation_reason, by_sha[BUG_DV].revocation_reason) == (
        "superseded",
        "",
    )


def test_v5_bad_revocation_date_names_the_row(tmp_path: Path) -> None:
    path = _v5_copy(tmp_path, add={"Revocation Date": {BUG_OV: "09/03/2021"}})
    message = f"{path}:18: Revocation Date '09/03/2021' is not a date like 2021.03.31 or 2021-03-31"
    _fails(load_ccadb_records, path, message)


def test_v5_technically_constrained(tmp_path: Path) -> None:
    values = {BUG_OV: "TRUE", BUG_DV: ""}
    path = _v5_copy(
        tmp_path, drop="Technically Constrained", add={"Technically Constrained": values}
    )
    by_sha = {d.sha256: d for d in load_ccadb_records(path, CTX).disclosures}
    assert (by_sha[BUG_OV].technically_constrained, by_sha[BUG_DV].technically_constrained) == (
        True,
        None,
    )


def test_v5_bad_fields_name_the_row_or_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "SHA-256 Fingerprint,CA Owner,Revocation Status,Certificate Record Type\n"
        f"{BUG_OV.lower()},SECOM,Revoked,Intermediate Certificate\n"
        "21C0663,SECOM,Revoked,Intermediate Certificate\n"
        f"{BUG_DV},SECOM,Gone,Intermediate Certificate\n"
    )
    _fails(
        load_ccadb_records, path, f"{path}:3: SHA-256 Fingerprint '21C0663' is not 64 hex digits"
    )
    facts = load_ccadb_records(path, SKIP)
    assert [d.sha256 for d in facts.disclosures] == [BUG_OV]  # upper-cased
    assert facts.skipped == (
        Skipped(f"{path}:3", "SHA-256 Fingerprint '21C0663' is not 64 hex digits"),
        Skipped(
            f"{path}:4",
            "Revocation Status 'Gone' is not one of '', 'Not Revoked', 'Revoked',"
            " 'Parent Cert Revoked'",
        ),
    )


def test_v5_gzip_compressed_report(tmp_path: Path) -> None:
    path = tmp_path / "records.csv.gz"
    path.write_bytes(gzip.compress(V5.read_bytes()))
    assert len(load_ccadb_records(path, CTX).disclosures) == 26


# --- AllCertificatePEMsCSVFormat ------------------------------------------------------------


@dataclass(frozen=True)
class Census:
    """The PEM set counted without the reader: rows, distinct fingerprints, and the
    fingerprints whose certificate `cryptography` itself refuses to load."""

    rows: int
    distinct: int
    refused: frozenset[str]


def _census(paths: list[Path]) -> Census:
    rows = 0
    ders: dict[str, bytes] = {}
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            for sha, pem in list(csv.reader(f))[1:]:
                rows += 1
                body = [line for line in pem.splitlines() if not line.startswith("-----")]
                ders[sha] = base64.b64decode("".join(body))
    return Census(rows, len(ders), frozenset(s for s, der in ders.items() if _refused(der)))


def _refused(der: bytes) -> bool:
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        return True
    return False


@pytest.fixture(scope="module")
def full_set() -> tuple[Facts, list[tuple[int, int | None]]]:
    calls: list[tuple[int, int | None]] = []
    ctx = SourceContext(now=NOW, skip_invalid=True, progress=lambda d, t: calls.append((d, t)))
    return load_ccadb_pem_files(PEMS, ctx), calls


@quiet
def test_full_pem_set_loses_nothing(full_set: tuple[Facts, list[tuple[int, int | None]]]) -> None:
    facts, calls = full_set
    census = _census(PEMS)
    assert len(PEMS) == 33
    # Measured with cryptography 50: 10,229 rows, 12 of them repeats, 15 certificates it refuses
    # to load (shared/data/SOURCES.md counted 21 with cryptography 48).
    assert (census.rows, census.distinct, len(census.refused)) == (10_229, 10_217, 15)
    assert calls[-1] == (10_229, 10_229)
    assert len(calls) == 10_229 // 500 + 1
    skipped_shas = [s.location.rsplit(" (", 1)[1].rstrip(")") for s in facts.skipped]
    assert len(facts.skipped) == 15
    assert set(skipped_shas) == census.refused
    assert len(facts.records) == 10_202 == census.distinct - len(census.refused)
    # Every row not skipped is a source of exactly one record: 10,229 = 10,214 + 15.
    assert sum(len(r.sources) for r in facts.records) == 10_214
    # 25 certificates have extensions cryptography cannot decode (bad policy text, name
    # constraints with host bits...): they are kept, and their CA flag is read from the DER.
    unreadable = [r for r in facts.records if r.info.extensions_error]
    assert len(unreadable) == 25
    assert all(r.info.is_ca for r in unreadable)
    assert len({r.sha256 for r in facts.records}) == len(facts.records)


@quiet
def test_full_pem_set_skipped_rows_name_file_line_and_fingerprint(
    full_set: tuple[Facts, list[tuple[int, int | None]]],
) -> None:
    facts, _ = full_set
    first = facts.skipped[0]
    path = PEMS[5]
    assert path.name == "AllCertificatePEMsCSVFormat_NotBeforeYear_1999.csv.gz"
    sha = "B3C962D34019FB38AB9FE9C62399742AB26C43C2D18CE3F2B13C14321E52964B"
    assert first == Skipped(
        f"{path}:751 ({sha})",
        "certificate cannot be parsed: error parsing asn1 value: ParseError { kind: EncodedDefault,"
        ' location: ["Certificate::tbs_cert", "TbsCertificate::version"] }',
    )
    # Name constraints with host bits set: cryptography refuses the extensions, not the
    # certificate, so it is kept (on its three rows) with the reason recorded.
    assert not [s for s in facts.skipped if "01FD614879394B3AE1" in s.location]
    (host_bits,) = [r for r in facts.records if r.sha256.startswith("01FD614879394B3AE1")]
    assert host_bits.info.extensions_error == "81.27.169.51/24 has host bits set"
    assert len(host_bits.sources) == 3


@quiet
def test_full_pem_set_repeated_rows_are_one_record(
    full_set: tuple[Facts, list[tuple[int, int | None]]],
) -> None:
    facts, _ = full_set
    by_sha = {r.sha256: r for r in facts.records}
    repeated = by_sha["69E2D06C30F366166165E91D68D1CEE5CC47584A80227E76666086C0107241EB"]
    assert [ref.kind for ref in repeated.sources] == ["ccadb-pem", "ccadb-pem"]
    assert len({ref.location for ref in repeated.sources}) == 2
    assert sum(1 for r in facts.records if len(r.sources) > 1) == 11
    assert {BUG_OV, BUG_DV} <= set(by_sha)


@quiet
def test_unparseable_certificate_stops_the_import_naming_row_and_fingerprint() -> None:
    path = PEMS[5]
    sha = "B3C962D34019FB38AB9FE9C62399742AB26C43C2D18CE3F2B13C14321E52964B"
    message = f"{path}:751 ({sha}): certificate cannot be parsed: error parsing asn1 value: "
    _fails(load_ccadb_pems, path, message)


def _pem_report(tmp_path: Path, *rows: tuple[str, str]) -> Path:
    path = tmp_path / "pems.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("SHA-256 Fingerprint", "X.509 Certificate (PEM)"), *rows])
    return path


def test_pem_row_becomes_a_record_with_its_row_as_source(tmp_path: Path) -> None:
    path = _pem_report(tmp_path, (BUG_OV.lower(), BUG_OV_PEM))
    [record] = load_ccadb_pems(path, CTX).records
    assert record.sha256 == BUG_OV
    assert record.sources == (SourceRef("ccadb-pem", f"{path}:2", NOW, NOW),)


def test_gzip_by_magic_bytes_whatever_the_name(tmp_path: Path) -> None:
    plain = _pem_report(tmp_path, (BUG_OV, BUG_OV_PEM))
    plain.write_bytes(gzip.compress(plain.read_bytes()))
    assert [r.sha256 for r in load_ccadb_pems(plain, CTX).records] == [BUG_OV]


def test_fingerprint_mismatch_names_the_row(tmp_path: Path) -> None:
    path = _pem_report(tmp_path, (BUG_DV, BUG_OV_PEM))
    message = f"{path}:2 ({BUG_DV}): the PEM's SHA-256 is {BUG_OV}, not the row's fingerprint"
    _fails(load_ccadb_pems, path, message)


def test_two_certificates_in_one_cell(tmp_path: Path) -> None:
    path = _pem_report(tmp_path, (BUG_OV, BUG_OV_PEM + BUG_OV_PEM))
    message = f"{path}:2 ({BUG_OV}): X.509 Certificate (PEM) holds 2 PEM certificates, not 1"
    _fails(load_ccadb_pems, path, message)


def test_broken_base64_is_skipped_at_its_fingerprint(tmp_path: Path) -> None:
    lines = BUG_OV_PEM.splitlines()
    lines[3] = "!" + lines[3][1:]
    path = _pem_report(tmp_path, (BUG_OV, "\n".join(lines)))
    facts = load_ccadb_pems(path, SKIP)
    assert facts.records == ()
    [skipped] = facts.skipped
    assert skipped.location == f"{path}:2 ({BUG_OV})"
    assert skipped.reason.startswith("certificate 1 cannot be parsed: invalid base64")


def test_missing_pem_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pems.csv"
    path.write_text(f"SHA-256 Fingerprint,PEM\n{BUG_OV},x\n")
    _fails(load_ccadb_pems, path, f"{path}:1: missing required column 'X.509 Certificate (PEM)'")


def test_pem_report_without_rows(tmp_path: Path) -> None:
    path = _pem_report(tmp_path)
    _fails(load_ccadb_pems, path, f"{path}: no certificate found (the report has no rows)")
