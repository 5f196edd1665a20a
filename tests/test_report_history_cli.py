"""`invsync report list / show / diff` over real signed reports in a directory."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result

from invsync.agent.exchange import envelope
from invsync.agent.exchange.keys import generate
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
    report_id,
    write_report_file,
)
from invsync.agent.sources.registry import load_sources
from invsync.server.cli import invsync
from tests.paths import DEMO

KEYS = {"exchange": generate(), "secom": generate(), "jprs": generate()}
ROLES = {"exchange": "server", "secom": "root", "jprs": "subordinate"}
PINS = [arg for name, key in KEYS.items() for arg in ("--pin", f"{name}={key.keyid}")]
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"


def _write(directory: Path, at: datetime, version: int, jprs: list[CertRecord]) -> str:
    secom = load_sources([str(DEMO / "secom_issuance_log.jsonl")], at)
    body = build_report_body(
        pairing="secom-jprs",
        as_of=at,
        root=SnapshotRef("secom", "root", version, "a" * 64),
        subordinate=SnapshotRef("jprs", "subordinate", version, "b" * 64),
        findings=reconcile(Side("secom", secom), Side("jprs", jprs), at),
        signers=[Signer(ROLES[n], n, k.keyid, k.public.spki_der) for n, k in KEYS.items()],
    )
    rid = report_id(body)
    env = envelope.sign(REPORT_PAYLOAD_TYPE, body, list(KEYS.values()))
    write_report_file(directory / f"secom-jprs-v{version}-{rid[:12]}.report.json", env)
    return rid


def _history(tmp_path: Path) -> tuple[str, str]:
    """Two reports: JPRS first lacks the two bug certificates, then lists the OV one too."""
    at1, at2 = datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 3, 2, tzinfo=UTC)
    jprs = load_sources([str(DEMO / "jprs_ca_certificates.pem")], at1)
    secom = load_sources([str(DEMO / "secom_issuance_log.jsonl")], at1)
    bug_ov = next(r for r in secom if r.sha256 == BUG_OV)
    return _write(tmp_path, at1, 1, jprs), _write(tmp_path, at2, 2, [*jprs, bug_ov])


def _run(*args: str) -> Result:
    return CliRunner().invoke(invsync, ["report", *args])


def test_list_shows_each_report_with_its_counts_and_signatures(tmp_path: Path) -> None:
    first, second = _history(tmp_path)
    result = _run("list", "--dir", str(tmp_path), "--format", "json", *PINS)
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [first, second]
    assert [r["summary"]["error"] for r in rows] == [2, 1]
    assert {r["signatures"] for r in rows} == {"complete"}
    # Without pins no signer is trusted: the same reports are listed, but not as complete.
    unpinned = json.loads(_run("list", "--dir", str(tmp_path), "--format", "json").output)
    assert {r["signatures"] for r in unpinned} == {"incomplete"}
    text = _run("list", "--dir", str(tmp_path)).output
    assert text.splitlines()[-1] == "reports: 2"
    assert f"{first[:12]}  secom-jprs  2021-03-01T00:00:00Z  root v1  subordinate v1" in text


def test_show_by_id_prefix_in_json_is_the_signed_body(tmp_path: Path) -> None:
    first, _ = _history(tmp_path)
    result = _run("show", first[:8], "--dir", str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["as_of"] == "2021-03-01T00:00:00Z"
    markdown = _run("show", first[:8], "--dir", str(tmp_path), "--format", "markdown").output
    assert BUG_DV in markdown


def test_an_unknown_id_is_refused_with_the_directory(tmp_path: Path) -> None:
    _history(tmp_path)
    result = _run("show", "ffff", "--dir", str(tmp_path))
    assert f"no report with id 'ffff' in {tmp_path}" in str(result.exception)


def test_diff_names_the_resolved_finding(tmp_path: Path) -> None:
    first, second = _history(tmp_path)
    text = _run("diff", first[:10], second[:10], "--dir", str(tmp_path)).output
    assert f"- ERROR   missing-at-subordinate  {BUG_OV}" in text
    assert text.splitlines()[-1].startswith("0 new, 2 resolved")
    data = json.loads(
        _run("diff", first[:10], second[:10], "--dir", str(tmp_path), "--format", "json").output
    )
    assert {(f["code"], f["sha256"]) for f in data["resolved"]} == {
        ("missing-at-subordinate", BUG_OV),
        ("doppelganger-untracked", BUG_OV),
    }
    assert data["new"] == []


def test_show_as_html_has_the_history_and_as_csv_the_findings(tmp_path: Path) -> None:
    first, second = _history(tmp_path)
    page = _run("show", second[:10], "--dir", str(tmp_path), "--format", "html").output
    assert page.startswith("<!DOCTYPE html>")
    assert BUG_DV in page
    csv_text = _run("show", first[:10], "--dir", str(tmp_path), "--format", "csv").output
    lines = csv_text.splitlines()
    assert lines[0].startswith("code,severity,sha256")
    assert sum(BUG_OV in line for line in lines) == 2  # missing-at-subordinate, doppelganger


def test_list_orders_reports_of_one_as_of_time_as_they_were_made(tmp_path: Path) -> None:
    """A replay (fixed as-of, as the demo's 2021-03-01) makes several reports of one time: they
    are listed as the server made them, each after the one its signed body continues, not by
    id. Versions of JPRS's snapshot, its list changing, until their ids are out of
    order (so that an order by id fails this)."""
    at = datetime(2021, 3, 1, tzinfo=UTC)
    jprs = load_sources([str(DEMO / "jprs_ca_certificates.pem")], at)
    secom = load_sources([str(DEMO / "secom_issuance_log.jsonl")], at)
    missing = [r for r in secom if r.sha256 not in {j.sha256 for j in jprs}]
    made: list[str] = []
    previous = None
    version = 0
    while len(made) < 3 or made == sorted(made):
        version += 1
        body = build_report_body(
            pairing="secom-jprs",
            as_of=at,
            root=SnapshotRef("secom", "root", 1, "a" * 64),
            subordinate=SnapshotRef("jprs", "subordinate", version, "b" * 64),
            findings=reconcile(
                Side("secom", secom), Side("jprs", [*jprs, *missing[: version % 3]]), at
            ),
            signers=[Signer(ROLES[n], n, k.keyid, k.public.spki_der) for n, k in KEYS.items()],
            previous=previous,
        )
        previous = parse_report_body(body)
        made.append(report_id(body))
        env = envelope.sign(REPORT_PAYLOAD_TYPE, body, list(KEYS.values()))
        write_report_file(tmp_path / f"r{version}.report.json", env)
    rows = json.loads(_run("list", "--dir", str(tmp_path), "--format", "json").output)
    assert [r["id"] for r in rows] == made
    assert [r["previous_report"] for r in rows] == ["", *made[:-1]]
