"""`invsync reconcile --ccadb --crl --audit-scope`: the public view reaches both sides."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from invsync.server.cli import invsync
from tests.paths import DEMO, FIXTURES

V5 = FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv"
CRLS = FIXTURES / "crls"
TRUSTWAVE = CRLS / "17_revoked_trustwave_ev_sha256_ca_level1.pem"
G4_OV = "801C522D3AD138E4"  # prefixes of real JPRS fingerprints
G4_DV = "F19D55CD08A3EA42"


def _inputs(*args: str) -> dict[str, dict[str, int]]:
    result = CliRunner().invoke(invsync, ["reconcile", *args, "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    inputs: dict[str, dict[str, int]] = json.loads(result.stdout)["inputs"]
    return inputs


def _demo(*extra: str) -> dict[str, dict[str, int]]:
    return _inputs(
        "--root",
        str(DEMO / "secom_issuance_log.jsonl"),
        "--subordinate",
        str(DEMO / "jprs_ca_certificates.pem"),
        "--at",
        "2021-04-01T00:00:00Z",
        *extra,
    )


def test_without_a_public_view_nothing_is_disclosed_or_audited() -> None:
    inputs = _demo()
    assert inputs["root"] == {
        "ca_certificates": 12,
        "disclosed_in_ccadb": 0,
        "in_an_audit_scope": 0,
        "revoked": 0,
        "revoked_per_crl": 0,
    }


def test_ccadb_records_attach_to_both_sides() -> None:
    inputs = _demo("--ccadb", str(V5))
    # The 26 real rows hold every JPRS record; the G1 and G2 generations predate them.
    assert inputs["root"]["disclosed_in_ccadb"] > 0
    assert inputs["root"]["disclosed_in_ccadb"] - inputs["subordinate"]["disclosed_in_ccadb"] == 2


def test_an_audit_list_attaches_its_fingerprints(tmp_path: Path) -> None:
    log = [
        json.loads(line) for line in (DEMO / "secom_issuance_log.jsonl").read_text().splitlines()
    ]
    shas = [
        x509.load_pem_x509_certificate(e["certificate"].encode()).fingerprint(hashes.SHA256()).hex()
        for e in log
    ]
    chosen = [s for s in shas if s.upper().startswith((G4_OV, G4_DV))]
    listing = tmp_path / "scope.txt"
    listing.write_text("In scope:\n" + "\n".join(chosen) + "\n")
    inputs = _demo("--audit-scope", str(listing), "--audit-kind", "WebTrust BR")
    assert len(chosen) == 2
    assert inputs["root"]["in_an_audit_scope"] == 2
    assert inputs["subordinate"]["in_an_audit_scope"] == 2


def test_a_crl_revokes_on_both_sides_when_its_issuer_is_known() -> None:
    inputs = _inputs(
        "--root",
        str(CRLS / "17.pem"),
        "--root",
        str(TRUSTWAVE),
        "--subordinate",
        str(TRUSTWAVE),
        "--crl",
        str(CRLS / "17.crl"),
        "--at",
        "2017-06-01T00:00:00Z",
    )
    assert inputs["root"]["ca_certificates"] == 1  # the self-signed issuer is set aside
    assert inputs["root"]["revoked_per_crl"] == 1
    assert inputs["subordinate"]["revoked_per_crl"] == 1
