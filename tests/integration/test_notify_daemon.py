"""Notifications from a real `invsync agent run` daemon: JPRS's agent, configured with a mail
channel (a real aiosmtpd server on loopback) and a webhook (a real HTTP receiver checking the
HMAC), co-signs the demo's report with SECOM's and tells both about the errors it must act on;
a second cycle on the same report tells nothing again; `invsync status` shows each channel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.server.cli import invsync
from invsync.server.localfed import command
from tests.integration.conftest import Federation, wait_for
from tests.integration.ports import free_port
from tests.integration.scrape import scrape, value
from tests.notify_receivers import WEBHOOK_SECRET, smtp_server, webhook_receiver
from tests.report_helpers import DV_BUG, OV_BUG

pytestmark = pytest.mark.integration


def _notify(smtp_port: int, url: str) -> str:
    return f"""
[[notify]]
name = "mail"
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "invsync@jprs.example"
to = ["compliance@jprs.example"]

[[notify]]
name = "soc"
kind = "webhook"
url = "{url}"
secret_env = "INVSYNC_TEST_HOOK"
events = ["finding-opened", "cycle-failing"]
"""


@contextmanager
def _daemon(work: Path, metrics_port: int) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    config = work / "jprs.toml"
    text = config.read_text()
    config.write_text(
        text.replace("[agent]\n", f'[agent]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n', 1)
    )
    out = work / "jprs-daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", INVSYNC_TEST_HOOK=WEBHOOK_SECRET)
    with out.open("w") as log:
        proc = subprocess.Popen(
            command("agent", "run", "--config", str(config), "--interval", "3600", "--wait", "30"),
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield out, proc
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _second_cycle(out: Path) -> None:
    deadline = time.monotonic() + 60
    while out.read_text().count("cycle ended after") < 2:
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.1)


def test_a_daemon_tells_its_channels_once(federation: Federation) -> None:
    work = federation.work
    port = free_port()
    with smtp_server() as (mailbox, smtp_port), webhook_receiver() as (hooks, url):
        config = work / "jprs.toml"
        config.write_text(config.read_text() + _notify(smtp_port, url))
        with _daemon(work, port) as (out, proc):
            secom = command("agent", "run", "--config", str(work / "secom.toml"), "--once")
            assert subprocess.run(secom, cwd=work, timeout=120).returncode == EXIT_FINDINGS
            wait_for(out, "subordinate valid)")
            wait_for(out, "jprs: cycle ended after")
            _, samples = scrape(port)
            mails = len(mailbox.messages)
            proc.send_signal(signal.SIGHUP)  # another cycle: the same report, nothing new
            _second_cycle(out)
    # The demo's two certificates JPRS lacks, and has no audit of: errors JPRS must act on,
    # each opened and past due; the webhook wants openings only.
    subjects = sorted(" ".join(str(m["Subject"]).split()) for m in mailbox.messages)
    assert subjects == [
        f"invsync jprs secom-jprs: {kind} {code} {sha[:16]}"
        for kind in ("finding-opened", "overdue")
        for code in ("missing-at-subordinate", "not-in-audit-scope")
        for sha in (OV_BUG, DV_BUG)
    ]
    assert len(mailbox.messages) == mails
    assert sorted((e["kind"], e["code"], e["sha256"]) for e in hooks.events) == [
        ("finding-opened", code, sha)
        for code in ("missing-at-subordinate", "not-in-audit-scope")
        for sha in (OV_BUG, DV_BUG)
    ]
    assert hooks.bad_signatures == 0
    assert value(samples, "invsync_agent_notifications_total", channel="mail", outcome="sent") == 8
    assert value(samples, "invsync_agent_notifications_pending", channel="soc") == 0
    result = CliRunner().invoke(invsync, ["status", "--config", str(config), "--offline"])
    assert result.exit_code == 0, result.output
    assert (
        f"notify soc (webhook {url.removesuffix('/hooks/invsync')}/…): 0 pending, last sent 20"
        in result.output
    )
    rows = json.loads(
        CliRunner()
        .invoke(invsync, ["status", "--config", str(config), "--offline", "--format", "json"])
        .output
    )
    assert [c["channel"] for c in rows[0]["notifications"]] == ["mail", "soc"]


def test_a_report_the_peer_has_not_signed_tells_nothing(federation: Federation) -> None:
    work = federation.work
    told = work / "told.jsonl"
    config = work / "secom.toml"
    config.write_text(
        config.read_text()
        + f"""
[[notify]]
name = "log"
kind = "command"
command = ["/bin/sh", "-c", "cat >> {told}"]
severities = ["error", "warning", "notice"]
"""
    )
    secom = command("agent", "run", "--config", str(config), "--once", "--wait", "2")
    run = subprocess.run(secom, cwd=work, timeout=120, capture_output=True, text=True)
    # JPRS never ran: the report SECOM writes lacks its signature, and may never get it.
    assert "subordinate absent" in run.stderr + run.stdout, run.stderr
    assert not told.exists()
    rows = json.loads(
        CliRunner()
        .invoke(invsync, ["status", "--config", str(config), "--offline", "--format", "json"])
        .output
    )
    (channel,) = rows[0]["notifications"]
    assert channel["pending"] == 0
