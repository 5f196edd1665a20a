"""A pairing whose peer has never connected: the server keeps going and the report says so."""

from __future__ import annotations

import subprocess

import pytest

from invsync.agent.report.body import parse_report_body, read_report_file, verify_report
from invsync.server.localfed import command
from tests.integration.conftest import Federation
from tests.integration.test_exchange import _run_both_agents

pytestmark = pytest.mark.integration


def test_a_peer_that_never_pushed_is_the_reports_one_finding(federation: Federation) -> None:
    secom = command(
        "agent", "run", "--config", str(federation.work / "secom.toml"), "--once", "--wait", "2"
    )
    proc = subprocess.run(secom, cwd=federation.work, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr  # a report not co-signed: a failed verification
    assert "(server valid, root valid, subordinate absent)" in proc.stdout
    assert "error: the report is not signed by every party yet" in proc.stderr

    (path,) = (federation.work / "reports" / "secom").glob("*.report.json")
    env = read_report_file(path)
    body = parse_report_body(env.payload)
    assert (body.root.version, body.subordinate.version, body.subordinate.digest) == (1, 0, "")
    assert [(f.code, f.party, f.message) for f in body.findings] == [
        (
            "stale-peer",
            "jprs",
            "jprs has not sent a snapshot of pairing secom-jprs yet; nothing was compared. "
            "It must configure its agent for the pairing and send one",
        )
    ]
    roles = {r: s.value for r, s in verify_report(env).roles.items()}
    assert roles == {"server": "valid", "root": "valid", "subordinate": "absent"}

    # JPRS connects at last: the next cycle compares both, and the silence is resolved.
    _run_both_agents(federation)
    reports = sorted((federation.work / "reports" / "jprs").glob("*.report.json"))
    latest = parse_report_body(read_report_file(reports[-1]).payload)
    assert (latest.root.version, latest.subordinate.version) == (1, 1)
    assert [r.finding.code for r in latest.resolved] == ["stale-peer"]
