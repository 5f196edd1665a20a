"""One attribution for the whole agent (issue 14, item 3), on the real SECOM hierarchy.

A SECOM agent with two root pairings, secom-jprs (`subject_organizations` = JPRS) and secom-nii
(= NII), collects all 185 CA certificates CCADB lists under SECOM. Before, a pairing's
organizations only widened that pairing's scope: its report then said both "secom issued ...
to jprs" (`missing-at-subordinate`) and "... without an operator" (`unattributed`) about one
certificate, and `inventory list --operator nii` listed none. Now each pairing's organizations
attribute to its peer, once, for every pairing and the inventory alike.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.cli.inventory import inventory_group
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ConfigError
from invsync.agent.inventory.attribution import Attribution, attribute
from invsync.agent.inventory.scope import root_scope
from invsync.agent.model.findings import (
    ATTRIBUTION_CONFLICT,
    MISSING_AT_SUBORDINATE,
    UNATTRIBUTED,
)
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Side, SnapshotHeader
from invsync.agent.reconcile.runner import reconcile
from invsync.server.localfed import agent_config, write_federation
from tests.headers import header
from tests.paths import SECOM_JPRS

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

JPRS_O, NII_O = "Japan Registry Services Co., Ltd.", "National Institute of Informatics"
HIERARCHY = SECOM_JPRS / "secom_hierarchy_all_ccadb.pem"
AT = datetime(2021, 3, 1, tzinfo=UTC)


def _records() -> list[CertRecord]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Parsed a serial number")
        certs = x509.load_pem_x509_certificates(HIERARCHY.read_bytes())
        return [CertRecord(parse_certificate(c.public_bytes(Encoding.DER))) for c in certs]


@pytest.fixture
def secom_config(tmp_path: Path) -> Path:
    """The demo federation's SECOM agent with a second root pairing, secom-nii, and the whole
    SECOM hierarchy as its roots' scope (every SECOM root certificate)."""
    write_federation(tmp_path)
    (tmp_path / "data" / "secom_roots.pem").write_bytes(
        (SECOM_JPRS / "secom_roots_selfsigned.pem").read_bytes()
    )
    toml = tmp_path / "secom.toml"
    toml.write_text(
        agent_config("secom", 7443)
        + '\n[peers.nii]\nsigning_keys = ["keys/jprs.pub"]\n\n[pairings.secom-nii]\n'
        + 'role = "root"\npeer = "nii"\nissuer_certificates = ["data/secom_roots.pem"]\n'
        + f'subject_organizations = ["{NII_O}"]\n'
    )
    return toml


def _header(pairing: str) -> SnapshotHeader:
    return header("secom", pairing, AT)


def _contradictions(attribution: Attribution, config: Path) -> dict[str, set[str]]:
    """Per pairing: the certificates its report both scopes to the peer and finds without an
    operator."""
    agent = load_agent_config(config)
    records = attribute(_records(), attribution)
    spkis = agent.ca_spkis()
    found = {}
    for pairing in agent.pairings.values():
        scoped = root_scope(
            records,
            issuer_spkis=spkis,
            subordinate=pairing.peer,
            subject_organizations=list(pairing.subject_organizations),
        )
        # The root side as a daemon's report has it: from a snapshot, whose agent attributes.
        root = Side("secom", scoped, header=_header(pairing.name))
        findings = reconcile(root, Side(pairing.peer, ()), AT)
        codes: dict[str, set[str]] = {}
        for finding in findings:
            codes.setdefault(finding.code, set()).add(finding.sha256)
        assert scoped and codes.get(MISSING_AT_SUBORDINATE), pairing.name
        found[pairing.name] = codes.get(MISSING_AT_SUBORDINATE, set()) & codes.get(
            UNATTRIBUTED, set()
        )
    return found


def test_no_certificate_is_both_issued_to_a_peer_and_without_an_operator(
    secom_config: Path,
) -> None:
    config = load_agent_config(secom_config)
    assert _contradictions(config.attribution, secom_config) == {
        "secom-jprs": set(),
        "secom-nii": set(),
    }
    # What the pairings' organizations alone (no longer the agent's attribution) gave before:
    # every NII certificate in scope was also `unattributed` (JPRS's have an issuance log here
    # neither), which this test exists to catch.
    before = _contradictions(Attribution(), secom_config)
    assert len(before["secom-nii"]) > 0 and len(before["secom-jprs"]) > 0


def test_inventory_list_by_operator_lists_each_pairings_certificates(
    secom_config: Path,
) -> None:
    runner = CliRunner()
    imported = runner.invoke(
        inventory_group, ["import", "--config", str(secom_config), str(HIERARCHY)]
    )
    assert imported.exit_code == 0, imported.output
    listed = {}
    for operator in ("nii", "jprs"):
        result = runner.invoke(
            inventory_group,
            ["list", "--config", str(secom_config), "--operator", operator, "--format", "json"],
        )
        assert result.exit_code == 0, result.output
        listed[operator] = json.loads(result.output)
    for operator, organization in (("nii", NII_O), ("jprs", JPRS_O)):
        assert all(
            f"O={organization}" in row["subject"].replace("\\", "") for row in listed[operator]
        )
    assert (len(listed["nii"]), len(listed["jprs"])) == (18, 16)
    assert {row["operator"] for row in listed["nii"]} == {"nii"}


def test_two_root_pairings_may_not_give_one_organization_to_two_peers(
    secom_config: Path,
) -> None:
    text = secom_config.read_text().replace(f'"{NII_O}"', f'"{JPRS_O}"')
    secom_config.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_agent_config(secom_config)
    assert str(e.value) == (
        f"{secom_config}: pairings.secom-nii.subject_organizations: '{JPRS_O}' is also in "
        "pairings.secom-jprs.subject_organizations, whose peer is 'jprs': an organization's "
        "certificates have one operator"
    )


def test_two_sources_naming_two_operators_are_one_finding_naming_both(
    secom_config: Path,
) -> None:
    nii = next(r for r in _records() if f"O={NII_O}" in r.info.subject.replace("\\", ""))
    rule = f'\n[[attribution.rules]]\noperator = "jprs"\nsha256 = ["{nii.sha256}"]\n'
    secom_config.write_text(secom_config.read_text() + rule)
    config = load_agent_config(secom_config)
    records = attribute(_records(), config.attribution)
    (attributed,) = [r for r in records if r.sha256 == nii.sha256]
    assert (attributed.operator, attributed.attribution) == (
        "jprs",
        "rule:fingerprint; conflicting: pairings.secom-nii.subject_organizations says nii",
    )
    # Attributing again (a stored record, read back) keeps one conflict, not two.
    assert attribute(records, config.attribution) == records
    scoped = root_scope(
        records,
        issuer_spkis=config.ca_spkis(),
        subordinate="jprs",
        subject_organizations=[JPRS_O],
    )
    findings = reconcile(Side("secom", scoped, header=_header("secom-jprs")), Side("jprs", ()), AT)
    conflicts = [f for f in findings if f.code == ATTRIBUTION_CONFLICT]
    assert [(f.sha256, f.severity.value) for f in conflicts] == [(nii.sha256, "warning")]
    assert conflicts[0].message.endswith(
        "to jprs by rule:fingerprint, but pairings.secom-nii.subject_organizations says nii: "
        "its sources disagree on who holds its key"
    )
    # One operator decided: the certificate is in jprs's scope alone, and nowhere unattributed.
    assert not [f for f in findings if f.code == UNATTRIBUTED]
