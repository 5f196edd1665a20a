"""`invsync status` after a real cycle: snapshot, report, server reachability."""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.agent.report.body import parse_report_body, read_report_file
from invsync.server.cli import invsync
from invsync.server.localfed import command
from tests.integration.conftest import Federation

pytestmark = pytest.mark.integration


def _status(federation: Federation, *extra: str) -> list[dict[str, object]]:
    config = str(federation.work / "secom.toml")
    result = CliRunner().invoke(invsync, ["status", "--config", config, "--format", "json", *extra])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


def test_status_after_a_full_cycle(federation: Federation) -> None:
    procs = [
        subprocess.Popen(
            command("agent", "run", "--config", str(federation.work / f"{p}.toml"), "--once"),
            cwd=federation.work,
        )
        for p in ("secom", "jprs")
    ]
    assert [p.wait(120) for p in procs] == [EXIT_FINDINGS, EXIT_FINDINGS]
    (row,) = _status(federation)
    assert row["pairing"] == "secom-jprs"
    snapshot = row["snapshot"]
    assert isinstance(snapshot, dict) and snapshot["version"] == 1 and not snapshot["expired"]
    assert row["pending_version"] is None
    report = row["report"]
    assert isinstance(report, dict)
    body = parse_report_body(read_report_file(str(report["file"])).payload)
    errors = sum(1 for f in body.findings if f.severity == "error")
    assert report["open"] == {"error": errors, "warning": report["open"]["warning"], "notice": 0}
    assert errors >= 2
    assert report["signatures"] == {"server": "valid", "root": "valid", "subordinate": "valid"}
    assert str(row["server"]).startswith(f"reachable at {federation.address} (latest report ")
    peer = row["peer_snapshot"]
    assert isinstance(peer, dict)
    assert (peer["source"], peer["version"], peer["expired"]) == ("server", 1, False)
    jprs_v1 = parse_report_body(read_report_file(str(report["file"])).payload).subordinate
    assert jprs_v1.version == 1
    (offline,) = _status(federation, "--offline")
    assert offline["server"] == "not asked (--offline)"
    assert offline["peer_snapshot"] == {"source": "latest report", "version": 1}
    config = str(federation.work / "secom.toml")
    text = CliRunner().invoke(invsync, ["status", "--config", config]).output
    assert "  peer snapshot: version 1, " in text and ", expires " in text, text


def test_status_before_any_cycle_says_so(federation: Federation) -> None:
    subprocess.run(
        command(
            "inventory",
            "import",
            "--config",
            str(federation.work / "secom.toml"),
            str(federation.work / "data" / "secom_roots.pem"),
        ),
        cwd=federation.work,
        check=True,
        capture_output=True,
    )
    config = str(federation.work / "secom.toml")
    text = CliRunner().invoke(invsync, ["status", "--config", config]).output
    assert "snapshot: none pushed yet" in text
    assert "report: none written yet" in text
    assert "peer snapshot: none (server)" in text
    assert f"server: reachable at {federation.address} (no report yet)" in text
