"""The server's metrics endpoint, served by a real process after a real cycle of both agents."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.server.localfed import PARTIES, agent_config, command, server_process, write_federation
from tests.integration.ports import free_port
from tests.integration.scrape import assert_serves_documented, scrape
from tests.integration.scrape import value as sample

pytestmark = pytest.mark.integration


def test_the_metrics_endpoint_serves_the_documented_names(tmp_path: Path) -> None:
    write_federation(tmp_path)
    metrics_port = free_port()
    toml = tmp_path / "server.toml"
    text = toml.read_text()
    assert 'listen = "127.0.0.1:0"\n' in text
    toml.write_text(
        text.replace(
            'listen = "127.0.0.1:0"\n',
            f'listen = "127.0.0.1:0"\nmetrics_listen = "127.0.0.1:{metrics_port}"\n',
        )
    )
    with server_process(tmp_path) as port:
        for party in PARTIES:
            (tmp_path / f"{party}.toml").write_text(agent_config(party, port))
        procs = [
            subprocess.Popen(
                command("agent", "run", "--config", str(tmp_path / f"{p}.toml"), "--once"),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for p in ("secom", "jprs")
        ]
        outputs = [proc.communicate(timeout=120)[0].decode() for proc in procs]
        assert [proc.returncode for proc in procs] == [EXIT_FINDINGS, EXIT_FINDINGS], outputs
        body, samples = scrape(metrics_port)
    assert len(assert_serves_documented("Exchange server", body, samples)) == 10

    def value(name: str, **labels: str) -> float | None:
        return sample(samples, name, **labels)

    for party in ("secom", "jprs"):
        labels = {"party": party, "pairing": "secom-jprs"}
        assert (
            value("invsync_snapshots_received_total", **labels, result="accepted", reason="") == 1
        )
        assert (value("invsync_last_accepted_snapshot_timestamp_seconds", **labels) or 0) > 0
    rejected = [
        k
        for k in samples
        if k[0] == "invsync_snapshots_received_total" and ("result", "rejected") in k[1]
    ]
    assert rejected == []
    findings = {"pairing": "secom-jprs", "code": "missing-at-subordinate", "severity": "error"}
    assert value("invsync_open_findings", **findings) == 2
    assert (value("invsync_rpc_duration_seconds_count", method="PushSnapshot") or 0) >= 2
    assert (value("invsync_rpc_duration_seconds_count", method="SubmitReportSignature") or 0) >= 2
