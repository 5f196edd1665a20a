"""`invsync inventory` on real data: import, list, show, export, and refusals."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from invsync.server.cli import invsync
from tests.paths import DEMO, FIXTURES

V5 = FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv"
CRLS = FIXTURES / "crls"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
TRUSTWAVE = "9E8077AB54AED337540CF45AC72AE25FF1625C4D21542C13D129FB3381600B74"


def _run(db: Path, *args: str) -> Result:
    return CliRunner().invoke(invsync, [args[0], args[1], "--db", str(db), *args[2:]])


def _import(db: Path, *sources: Path | str) -> Result:
    result = _run(db, "inventory", "import", *map(str, sources))
    assert result.exit_code == 0, result.output
    return result


def _count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from certificates").fetchone()[0])


def _show(db: Path, sha256: str) -> dict[str, object]:
    result = _run(db, "inventory", "show", sha256, "--format", "json")
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.output)
    return shown


def test_import_then_list_by_operator(tmp_path: Path) -> None:
    db = tmp_path / "secom.db"
    out = _import(db, DEMO / "secom_issuance_log.jsonl", DEMO / "secom_roots.pem").output
    assert "imported: 23 certificates in the inventory (0 before)" in out
    listed = _run(db, "inventory", "list", "--operator", "jprs", "--format", "json")
    rows = json.loads(listed.output)
    assert len(rows) == 12
    assert BUG_OV in {row["sha256"] for row in rows}
    unattributed = _run(db, "inventory", "list", "--unattributed", "--format", "csv")
    assert unattributed.output.splitlines()[0].startswith("sha256,subject,serial")
    assert len(unattributed.output.splitlines()) == 1 + 11  # the self-signed roots


def test_a_later_ccadb_import_attaches_to_what_is_held(tmp_path: Path) -> None:
    db = tmp_path / "secom.db"
    _import(db, DEMO / "secom_issuance_log.jsonl")
    out = _import(db, V5).output
    assert "note: CCADB disclosures about certificates not held:" in out
    shown = _show(db, BUG_OV)
    disclosure = shown["disclosure"]
    assert isinstance(disclosure, dict)
    assert disclosure["revocation_status"] == "Revoked"
    assert shown["attribution"] == "issuance-log"
    assert shown["serial_bytes"] == 9
    sources = shown["sources"]
    assert isinstance(sources, list)
    assert {s["kind"] for s in sources} == {"issuance-log"}


def test_a_crl_revokes_a_certificate_imported_earlier(tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    _import(db, CRLS / "17.pem", CRLS / "17_revoked_trustwave_ev_sha256_ca_level1.pem")
    out = _import(db, CRLS / "17.crl").output
    assert "note: CRL entries matching no certificate held:" in out
    revocation = _show(db, TRUSTWAVE)["revocation"]
    assert isinstance(revocation, dict)
    assert str(revocation["source"]).startswith(f"crl:{CRLS / '17.crl'}")
    revoked = _run(db, "inventory", "list", "--revoked", "--format", "json")
    assert [row["sha256"] for row in json.loads(revoked.output)] == [TRUSTWAVE]


def test_a_bad_line_writes_nothing_and_skip_invalid_keeps_the_rest(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    lines = (DEMO / "secom_issuance_log.jsonl").read_text().splitlines()
    log.write_text("\n".join([lines[0], '{"certificate": "not base64!"}', *lines[1:]]) + "\n")
    db = tmp_path / "inv.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "invsync.server.cli",
            "inventory",
            "import",
            "--db",
            str(db),
            str(log),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"error: {log}:2: " in proc.stderr
    assert not db.exists()  # the failed import created it, so it removed it
    result = _run(db, "inventory", "import", str(log), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"skipped: {log}:2: " in result.output
    assert _count(db) == 12


def test_show_of_an_unknown_fingerprint_names_it(tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    _import(db, DEMO / "secom_roots.pem")
    result = _run(db, "inventory", "show", "AB" * 32)
    assert result.exit_code != 0
    assert f"no certificate {'AB' * 32} in the inventory" in str(result.exception)


def test_export_as_jsonl_imports_back_identically(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _import(db, DEMO / "secom_issuance_log.jsonl")
    exported = tmp_path / "export.jsonl"
    result = _run(db, "inventory", "export", "--format", "jsonl", "--output", str(exported))
    assert result.exit_code == 0, result.output
    again = tmp_path / "b.db"
    _import(again, exported)
    first = json.loads(_run(db, "inventory", "list", "--format", "json").output)
    second = json.loads(_run(again, "inventory", "list", "--format", "json").output)
    assert [(r["sha256"], r["operator"]) for r in first] == [
        (r["sha256"], r["operator"]) for r in second
    ]


def test_export_as_pem_holds_every_certificate(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    _import(db, DEMO / "jprs_ca_certificates.pem")
    result = _run(db, "inventory", "export")
    assert result.output.count("-----BEGIN CERTIFICATE-----") == 10


def test_inventory_commands_need_a_database() -> None:
    result = CliRunner().invoke(invsync, ["inventory", "list"])
    assert "name the database with --db PATH or an agent configuration with --config" in str(
        result.exception
    )


def test_a_failed_import_leaves_no_new_database_behind(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    db = tmp_path / "new.db"
    result = _run(db, "inventory", "import", str(bad))
    assert result.exit_code != 0
    assert f"{bad}: no certificate found" in str(result.exception)
    assert not db.exists()
    assert not (tmp_path / "new.db-wal").exists() and not (tmp_path / "new.db-shm").exists()


def test_a_failed_import_leaves_an_existing_database_untouched(tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    _import(db, DEMO / "secom_issuance_log.jsonl")
    before = db.read_bytes()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    result = _run(db, "inventory", "import", str(bad))
    assert result.exit_code != 0
    assert db.read_bytes() == before
    assert _count(db) == 12


def test_max_source_bytes_refuses_a_larger_source(tmp_path: Path) -> None:
    log = DEMO / "secom_issuance_log.jsonl"
    size = log.stat().st_size
    db = tmp_path / "inv.db"
    result = _run(db, "inventory", "import", str(log), "--max-source-bytes", str(size - 1))
    assert result.exit_code != 0
    assert f"{log}: file is {size} bytes, larger than the source size cap of {size - 1}" in (
        str(result.exception)
    )
    assert not db.exists()
    _import(db, log, "--max-source-bytes", str(size))
    assert _count(db) == 12


def test_importing_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "roots.pem"
    os.mkfifo(fifo)
    result = _run(tmp_path / "inv.db", "inventory", "import", str(fifo))
    assert result.exit_code != 0
    assert f"{fifo}: is a FIFO (named pipe), not a regular file" in str(result.exception)
