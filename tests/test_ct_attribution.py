"""CT-ingested certificates attributed like every other (issue 14, item 3).

The issue found "Certificates ingested from CT logs are never attributed". Two causes: a root
pairing's `subject_organizations` were no attribution (fixed with the one attribution: CT
records pass it like the rest, pinned here on the real SECOM hierarchy as CT entries), and a
CT pre-certificate has its own SHA-256, so the issuance log's operator of its certificate
never reached it (fixed: it is attributed like its certificate, `final-certificate`).

And an agent's own cycle never kept a CT log's certificates: its configuration resolved a log's
URL as a path ("https://ct.example/log" became "DIR/https:/ct.example/log"), and once that was
mended, each collection dropped what the log gave the one before (a fetch starts after the
committed progress). Both pinned below with a log served over HTTP on loopback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.cli.inventory import inventory_group
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.inventory.attribution import Attribution, AttributionRule
from invsync.agent.inventory.collect import collect
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import CertRecord
from invsync.server.localfed import agent_config, write_federation
from tests import ca_chain
from tests.ct_helpers import HIERARCHY, JPRS_SHA256, der, precert_entry, spki, x509_entry
from tests.paths import SECOM_JPRS
from tests.test_ct_client import FakeLog, _LogServer, _serve

pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number:UserWarning")

NII_O = "National Institute of Informatics"
NOW = datetime(2021, 3, 1, tzinfo=UTC)


def _secom_config(work: Path, sources: str | None = None) -> Path:
    """The demo's SECOM agent with secom-jprs and secom-nii over every SECOM root, its sources
    replaced by `sources` (a TOML array) if given."""
    write_federation(work)
    (work / "data" / "secom_roots.pem").write_bytes(
        (SECOM_JPRS / "secom_roots_selfsigned.pem").read_bytes()
    )
    text = agent_config("secom", 7443)
    if sources is not None:
        text = text.replace('["issuance-log:data/secom_issuance_log.jsonl"]', sources)
    config = work / "secom.toml"
    config.write_text(
        text
        + '\n[peers.nii]\nsigning_keys = ["keys/jprs.pub"]\n\n[pairings.secom-nii]\n'
        + 'role = "root"\npeer = "nii"\nissuer_certificates = ["data/secom_roots.pem"]\n'
        + f'subject_organizations = ["{NII_O}"]\n'
    )
    return config


def _listed(config: Path) -> dict[str, list[dict[str, str]]]:
    runner = CliRunner()
    listed = {}
    for operator in ("jprs", "nii"):
        result = runner.invoke(
            inventory_group,
            ["list", "--config", str(config), "--operator", operator, "--format", "json"],
        )
        assert result.exit_code == 0, result.output
        listed[operator] = json.loads(result.output)
    return listed


def test_ct_entries_of_the_real_hierarchy_are_attributed_by_every_pairing(
    tmp_path: Path,
) -> None:
    """SECOM's agent with secom-jprs and secom-nii imports the 185 CA certificates of its
    hierarchy as CT entries only: JPRS's 16 and NII's 18 have their operator."""
    config = _secom_config(tmp_path)
    entries = tmp_path / "ct.json"
    entries.write_text(json.dumps({"entries": [x509_entry(der(c)) for c in HIERARCHY]}))
    runner = CliRunner()
    imported = runner.invoke(inventory_group, ["import", "--config", str(config), str(entries)])
    assert imported.exit_code == 0, imported.output
    assert "imported: 185 certificates in the inventory (0 before)" in imported.output
    listed = _listed(config)
    assert {row["sha256"] for row in listed["jprs"]} == JPRS_SHA256
    assert len(listed["nii"]) == 18
    assert {row["sources"] for row in [*listed["jprs"], *listed["nii"]]} == {"ct"}


@pytest.mark.parametrize("spec", ["{url}", "ct-log:{url}"])
def test_an_agents_cycles_keep_and_attribute_what_a_ct_log_gave(tmp_path: Path, spec: str) -> None:
    """The 185 as a live log, read by the agent's own collection beside its issuance log (the
    demo's 12 JPRS certificates): every cycle holds all of them, attributed."""
    log = FakeLog([x509_entry(der(c)) for c in HIERARCHY], page=64)
    with _serve(_LogServer(log)) as address:
        url = f"http://{address}/log"
        config = _secom_config(
            tmp_path, f'["issuance-log:data/secom_issuance_log.jsonl", "{spec.format(url=url)}"]'
        )
        assert load_agent_config(config).sources[1] == spec.format(url=url)
        agent = Agent(load_agent_config(config))
        try:
            counts = [agent.collect(), agent.collect()]
        finally:
            agent.close()
    assert counts == [185, 185]
    fetched = [r for r in log.requests if "get-entries" in r]
    assert len(fetched) == 3  # the first collection read the log; the second had nothing new
    listed = _listed(config)
    assert {row["sha256"] for row in listed["jprs"]} == JPRS_SHA256
    assert len(listed["nii"]) == 18
    sources = {row["sha256"]: row["sources"] for row in listed["jprs"]}
    assert sorted(set(sources.values())) == ["ct", "ct;issuance-log"]


def test_what_a_ct_log_gave_leaves_with_the_root_key_it_was_kept_for(tmp_path: Path) -> None:
    """A reload that takes away the only pairing naming a root (here: every SECOM root
    replaced by an unrelated one) drops what the log gave under those roots at the next
    collection, though the log is still configured: the reader would not keep them now."""
    log = FakeLog([x509_entry(der(c)) for c in HIERARCHY], page=64)
    with _serve(_LogServer(log)) as address:
        url = f"http://{address}/log"
        config = _secom_config(tmp_path, f'["issuance-log:data/secom_issuance_log.jsonl", "{url}"]')
        agent = Agent(load_agent_config(config))
        try:
            first = agent.collect()
        finally:
            agent.close()
        other = ca_chain.root("Unrelated Root", "Elsewhere")
        (tmp_path / "data" / "secom_roots.pem").write_bytes(other.pem)
        agent = Agent(load_agent_config(config))
        try:
            second = agent.collect()
        finally:
            agent.close()
    assert (first, second) == (185, 12)  # then the issuance log's 12 alone


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
