"""`invsync inventory lint`: pkilint's CA/B Forum TLS BR checks on real JPRS CA certificates.

The opt-in linter runs for real (it is in the dev extra). The ten JPRS certificates of the demo
are real: pkilint finds that none carries the CA/B Forum reserved policy OID, that the 2016 and
2018 ones have no EKU extension, and that the 2019 G3 pair carries the OCSPSigning EKU.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.inventory import lint
from invsync.agent.inventory.lint import lint_certificate
from invsync.server.cli import invsync, main
from tests.paths import DEMO

JPRS_PEM = DEMO / "jprs_ca_certificates.pem"
OV_G3_2019 = "90EE548EBACACAB40207A61A378CE186B94D24AE7C55BFC83065EA96072E2B38"
RESERVED_OID = "cabf.serverauth.ca_missing_reserved_policy_oid"


@dataclass(frozen=True)
class Ran:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Runner:
    """The command group's entry in-process, as the console script runs it (its exit codes)."""

    def invoke(*args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["invsync", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        out = capsys.readouterr()
        return Ran(int(str(exited.value.code or 0)), out.out, out.err)

    return invoke


Runner = Callable[..., Ran]


def _db(tmp_path: Path) -> Path:
    db = tmp_path / "jprs.db"
    result = CliRunner().invoke(invsync, ["inventory", "import", "--db", str(db), str(JPRS_PEM)])
    assert result.exit_code == 0, result.output
    return db


def _certificates() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(JPRS_PEM.read_bytes())


def test_every_certificate_is_linted_and_errors_exit_1(tmp_path: Path, run: Runner) -> None:
    result = run("inventory", "lint", "--db", str(_db(tmp_path)), "--all", "--format", "json")
    assert result.exit_code == 1, result.stderr
    listed = json.loads(result.stdout)
    assert listed["linter"].startswith("pkilint 0.13")
    rows = {row["sha256"]: row for row in listed["certificates"]}
    assert len(rows) == len(_certificates()) == 10
    for row in rows.values():
        assert row["type"] == "INTERNAL_UNCONSTRAINED_TLS_CA"
        assert RESERVED_OID in {f["code"] for f in row["findings"]}
    no_eku = {s for s, row in rows.items() if _has(row, "extended_key_usage_extension_absent")}
    assert {rows[s]["subject"].split(",")[0] for s in no_eku} == {
        "CN=JPRS Domain Validation Authority - G1",
        "CN=JPRS Organization Validation Authority - G1",
        "CN=JPRS Domain Validation Authority - G2",
        "CN=JPRS Organization Validation Authority - G2",
    }
    assert _has(rows[OV_G3_2019], "ca.ocspsigning_eku_present")
    assert "error: 10 of 10 CA certificates have ERROR findings" in result.stderr


def _has(row: dict[str, list[dict[str, str]]], code: str) -> bool:
    return any(f["code"].endswith(code) for f in row["findings"])


def test_by_default_only_live_certificates_are_linted(tmp_path: Path, run: Runner) -> None:
    result = run("inventory", "lint", "--db", str(_db(tmp_path)), "--format", "json")
    now = datetime.now(UTC)
    live = {
        c.fingerprint(hashes.SHA256()).hex().upper()
        for c in _certificates()
        if c.not_valid_after_utc > now
    }
    listed = {row["sha256"] for row in json.loads(result.stdout)["certificates"]}
    assert listed == live


def test_the_severity_floor_hides_less_severe_findings(tmp_path: Path, run: Runner) -> None:
    db = str(_db(tmp_path))
    text = run("inventory", "lint", "--db", db, "--all", "--severity", "error").stdout
    assert "ERROR   cabf.serverauth.ca_missing_reserved_policy_oid" in text
    assert "O=Japan Registry Services Co., Ltd., C=JP\n" in text
    assert "WARNING" not in text
    assert text.endswith("10 CA certificates checked\n")


def test_undecodable_bytes_are_one_fatal_finding_not_a_crash() -> None:
    result = lint_certificate(b"\x30\x03\x02\x01\x00", "AB" * 32)
    assert result.kind == "UNKNOWN"
    assert [(f.severity, f.code) for f in result.findings] == [("FATAL", "invsync.lint_failed")]
    assert result.findings[0].message.startswith("pkilint: ")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_result(data: bytes) -> None:
    result = lint_certificate(b"\x30" + data, "CD" * 32)
    assert result.sha256 == "CD" * 32
    assert all(f.severity in lint.SEVERITIES for f in result.findings)


def test_without_pkilint_the_command_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Runner
) -> None:
    db = str(_db(tmp_path))
    real = importlib.import_module

    def no_pkilint(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("pkilint"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_pkilint)
    result = run("inventory", "lint", "--db", db)
    assert result.exit_code == 3
    assert "error: pkilint is not installed (No module named 'pkilint.loader')" in result.stderr
    assert "pip install 'invsync[lint]'" in result.stderr


def test_without_a_database_the_command_says_how_to_name_one(run: Runner) -> None:
    result = run("inventory", "lint")
    assert result.exit_code == 2
    assert "name the database with --db PATH or an agent configuration with --config" in (
        result.stderr
    )
