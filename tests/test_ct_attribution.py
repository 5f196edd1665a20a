"""CT-ingested certificates attributed like every other (issue 14, item 3).

The issue found "Certificates ingested from CT logs are never attributed". Two causes: a root
pairing's `subject_organizations` were no attribution (fixed with the one attribution: CT
records pass it like the rest, pinned here on the real SECOM hierarchy as CT entries), and a
CT pre-certificate has its own SHA-256, so the issuance log's operator of its certificate
never reached it (fixed: it is attributed like its certificate, `final-certificate`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.cli.inventory import inventory_group
from invsync.agent.inventory.attribution import Attribution, AttributionRule
from invsync.agent.inventory.collect import collect
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import CertRecord
from invsync.server.localfed import agent_config, write_federation
from tests import ca_chain
from tests.ct_helpers import HIERARCHY, JPRS_SHA256, der, precert_entry, spki, x509_entry
from tests.paths import SECOM_JPRS

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

NII_O = "National Institute of Informatics"
NOW = datetime(2021, 3, 1, tzinfo=UTC)


def test_ct_entries_of_the_real_hierarchy_are_attributed_by_every_pairing(
    tmp_path: Path,
) -> None:
    """SECOM's agent with secom-jprs and secom-nii imports the 185 CA certificates of its
    hierarchy as CT entries only: JPRS's 16 and NII's 18 have their operator."""
    write_federation(tmp_path)
    (tmp_path / "data" / "secom_roots.pem").write_bytes(
        (SECOM_JPRS / "secom_roots_selfsigned.pem").read_bytes()
    )
    config = tmp_path / "secom.toml"
    config.write_text(
        agent_config("secom", 7443)
        + '\n[peers.nii]\nsigning_keys = ["keys/jprs.pub"]\n\n[pairings.secom-nii]\n'
        + 'role = "root"\npeer = "nii"\nissuer_certificates = ["data/secom_roots.pem"]\n'
        + f'subject_organizations = ["{NII_O}"]\n'
    )
    entries = tmp_path / "ct.json"
    entries.write_text(json.dumps({"entries": [x509_entry(der(c)) for c in HIERARCHY]}))
    runner = CliRunner()
    imported = runner.invoke(inventory_group, ["import", "--config", str(config), str(entries)])
    assert imported.exit_code == 0, imported.output
    assert "imported: 185 certificates in the inventory (0 before)" in imported.output
    listed = {}
    for operator in ("jprs", "nii"):
        result = runner.invoke(
            inventory_group,
            ["list", "--config", str(config), "--operator", operator, "--format", "json"],
        )
        assert result.exit_code == 0, result.output
        listed[operator] = json.loads(result.output)
    assert {row["sha256"] for row in listed["jprs"]} == JPRS_SHA256
    assert len(listed["nii"]) == 18
    assert {row["sources"] for row in [*listed["jprs"], *listed["nii"]]} == {"ct"}


def _collected(tmp_path: Path, attribution: Attribution) -> dict[str, CertRecord]:
    """A root's issuance log naming JPRS's CA certificate, and a CT log holding that
    certificate's pre-certificate (same key, issuer and serial, with the poison extension),
    collected together: the records by source kind."""
    root = ca_chain.root("Test SECOM Root", "SECOM Trust Systems CO.,LTD.")
    final = ca_chain.issue(root, "Test JPRS CA", "Japan Registry Services Co., Ltd.")
    pre = ca_chain.issue(
        root, "Test JPRS CA", "Japan Registry Services Co., Ltd.", key=final.key, precert=True
    )
    log = tmp_path / "issued.jsonl"
    log.write_text(json.dumps({"certificate": final.pem.decode(), "operator": "jprs"}) + "\n")
    ct = tmp_path / "ct.json"
    root_spki = spki(root.key.public_key())
    entry = precert_entry(pre.der, pre.cert.tbs_certificate_bytes, root_spki)
    ct.write_text(json.dumps({"entries": [entry]}))
    ctx = SourceContext(now=NOW, party_ca_spkis=[root_spki])
    collected = collect([(str(log), None), (str(ct), None)], ctx, attribution=attribution)
    records = collected.assembled.records
    assert len(records) == 2
    return {r.sources[0].kind: r for r in records}


def test_a_ct_precertificate_is_attributed_like_its_certificate(tmp_path: Path) -> None:
    by_kind = _collected(tmp_path, Attribution())
    final, pre = by_kind["issuance-log"], by_kind["ct-precert"]
    assert final.sha256 != pre.sha256
    assert (final.operator, final.attribution) == ("jprs", "issuance-log")
    assert (pre.operator, pre.attribution) == ("jprs", "final-certificate")


def test_a_precertificate_attributed_otherwise_is_a_conflict_naming_both(
    tmp_path: Path,
) -> None:
    # A rule on the subject organization names another operator for both certificates.
    rule = AttributionRule(
        operator="nii", subject_organizations=frozenset({"Japan Registry Services Co., Ltd."})
    )
    by_kind = _collected(tmp_path, Attribution(rules=(rule,)))
    final, pre = by_kind["issuance-log"], by_kind["ct-precert"]
    assert final.attribution == ("issuance-log; conflicting: rule:subject-organization says nii")
    assert (pre.operator, pre.attribution) == (
        "nii",
        "rule:subject-organization; conflicting: final-certificate says jprs",
    )
