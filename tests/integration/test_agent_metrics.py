"""The agent daemon's metrics endpoint, scraped from a real `invsync agent run` process.

The names come from docs/metrics.md's agent table, so the documentation and the code cannot
drift apart; the values are checked against what the cycle really did (the inventory file, the
report it wrote, the server's verdict).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.agent.report.body import parse_report_body, read_report_file
from invsync.server.localfed import agent_config, command, server_process, write_federation
from tests.integration.conftest import Federation, wait_for
from tests.integration.ports import free_port
from tests.integration.scrape import Samples, assert_serves_documented, scrape, value

pytestmark = pytest.mark.integration
PAIRING = {"pairing": "secom-jprs"}


@contextmanager
def _daemon(work: Path, party: str, metrics_port: int) -> Iterator[Path]:
    """`party`'s agent daemon serving metrics on `metrics_port`; yields its output file."""
    config = work / f"{party}.toml"
    text = config.read_text()
    config.write_text(
        text.replace("[agent]\n", f'[agent]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', 1)
    )
    out = work / f"{party}-daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with out.open("w") as log:
        proc = subprocess.Popen(
            command("agent", "run", "--config", str(config), "--interval", "3600", "--wait", "30"),
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_PAGER = f"""
[[notify]]
name = "pager"
kind = "command"
command = [{json.dumps(sys.executable)}, "-c", "import sys; sys.stdin.buffer.read()"]
"""


def _labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_an_agent_daemon_serves_every_documented_metric_after_a_cycle(
    federation: Federation,
) -> None:
    port = free_port()
    started = time.time()
    jprs = federation.work / "jprs.toml"  # a notification channel: its metrics have values
    jprs.write_text(jprs.read_text() + _PAGER)
    with _daemon(federation.work, "jprs", port) as out:
        secom = command("agent", "run", "--config", str(federation.work / "secom.toml"), "--once")
        assert subprocess.run(secom, cwd=federation.work, timeout=120).returncode == EXIT_FINDINGS
        wait_for(out, "subordinate valid)")  # jprs's first cycle ended fully signed
        log = wait_for(out, "jprs: cycle ended after")  # and its notifications were sent
        body, samples = scrape(port)
    assert len(assert_serves_documented("Agent", body, samples)) == 9
    # Four error findings JPRS must act on, each opened and past due: eight events.
    sent = {"channel": "pager", "outcome": "sent"}
    assert value(samples, "invsync_agent_notifications_total", **sent) == 8
    assert value(samples, "invsync_agent_notifications_pending", channel="pager") == 0

    inventory = federation.work / "data" / "jprs_ca_certificates.pem"
    records = len(x509.load_pem_x509_certificates(inventory.read_bytes()))
    assert f"jprs: collected {records} certificates" in log
    assert value(samples, "invsync_inventory_records") == records
    assert value(samples, "invsync_collection_duration_seconds_count") == 1
    assert _labelled(samples, "invsync_snapshots_pushed_total") == {
        frozenset({**PAIRING, "result": "accepted", "reason": ""}.items()): 1
    }
    # Nothing was refused, and every known rule is exported as 0 from the start.
    refused = _labelled(samples, "invsync_agent_inputs_refused_total")
    assert refused and set(refused.values()) == {0.0}
    assert {dict(labels)["pairing"] for labels in refused} == {PAIRING["pairing"]}
    last = value(samples, "invsync_last_successful_exchange_timestamp_seconds", **PAIRING)
    assert last is not None and started < last < time.time()

    # The findings gauge holds the report the agent wrote, code by code.
    (report,) = (federation.work / "reports" / "jprs").glob("*.report.json")
    findings = parse_report_body(read_report_file(report).payload).findings
    expected = Counter((f.code, str(f.severity)) for f in findings)
    assert expected[("missing-at-subordinate", "error")] == 2
    assert _labelled(samples, "invsync_open_findings") == {
        frozenset({**PAIRING, "code": code, "severity": severity}.items()): count
        for (code, severity), count in expected.items()
    }
    calls = {
        dict(labels)["method"]: v
        for labels, v in _labelled(samples, "invsync_client_rpc_duration_seconds_count").items()
    }
    assert calls["PushSnapshot"] == 1
    # One per report co-signed: two when jprs pushed first and signed the report saying secom
    # had sent nothing yet, before the report on both snapshots.
    with sqlite3.connect(federation.work / "state" / "jprs.db") as db:
        cosigned = db.execute("select count(*) from cosigned_reports").fetchone()[0]
    assert cosigned in (1, 2)
    assert calls["SubmitReportSignature"] == cosigned
    # The peer's snapshot comes with the report (server/peer_attachment.py): FetchSnapshot is
    # called only to ask whether secom has pushed, when a report says it has not.
    assert calls["GetReport"] >= 1


def test_a_rejected_push_is_counted_under_the_rule_the_server_names(tmp_path: Path) -> None:
    write_federation(tmp_path)
    server = tmp_path / "server.toml"
    text = server.read_text()
    pinned = '[parties.jprs]\ntls_identity = "jprs"\nsigning_keys = ["keys/jprs.pub"]\n'
    assert pinned in text
    # The server pins a key jprs does not hold: its snapshot breaks untrusted-signer.
    server.write_text(text.replace(pinned, pinned.replace("jprs.pub", "server.pub")))
    port = free_port()
    with server_process(tmp_path) as grpc_port:
        (tmp_path / "jprs.toml").write_text(agent_config("jprs", grpc_port))
        with _daemon(tmp_path, "jprs", port) as out:
            log = wait_for(out, "cycle failed")
            _, samples = scrape(port)
    assert "PERMISSION_DENIED: snapshot rejected [untrusted-signer]" in log
    assert _labelled(samples, "invsync_snapshots_pushed_total") == {
        frozenset({**PAIRING, "result": "rejected", "reason": "untrusted-signer"}.items()): 1
    }
    assert _labelled(samples, "invsync_last_successful_exchange_timestamp_seconds") == {}
    assert _labelled(samples, "invsync_open_findings") == {}
    push = value(samples, "invsync_client_rpc_duration_seconds_count", method="PushSnapshot")
    assert push == 1
