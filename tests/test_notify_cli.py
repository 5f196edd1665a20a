"""`invsync notify test`, run as a process against a real SMTP server (STARTTLS, AUTH with a
password file) and a real webhook receiver: each channel's line, and the exit status."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.config.settings import load_agent_config
from invsync.agent.notify.events import Event
from invsync.agent.notify.outbox import Notifier
from invsync.agent.store.agent_store import AgentStore
from invsync.server.cli import invsync
from tests.notify_receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    free_port,
    raw_http,
    server_tls,
    smtp_server,
    webhook_receiver,
)

NOW = datetime(2021, 3, 1, tzinfo=UTC)


def _entries(smtp_port: int, url: str, ca: Path) -> str:
    return f"""
[[notify]]
name = "mail-officers"
kind = "smtp"
host = "127.0.0.1"
port = {smtp_port}
security = "starttls"
ca = "{ca}"
from = "invsync@secom.example"
to = ["compliance@secom.example"]
username = "{SMTP_USER}"
password_file = "smtp-password"

[[notify]]
name = "webhook-soc"
kind = "webhook"
url = "{url}"
secret_env = "INVSYNC_TEST_HOOK"
"""


def _run(config: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "invsync.server.cli",
        "notify",
        "test",
        "--config",
        str(config),
    ]
    env = {**os.environ, "INVSYNC_TEST_HOOK": WEBHOOK_SECRET}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)


def _configure(fed: Path, smtp_port: int, url: str, ca: Path) -> Path:
    (fed / "smtp-password").write_text(SMTP_PASSWORD + "\n")
    (fed / "smtp-password").chmod(0o600)
    config = fed / "secom.toml"
    config.write_text(config.read_text() + _entries(smtp_port, url, ca))
    return config


def test_both_channels_work(fed: Path) -> None:
    tls = server_tls(fed / "smtp-tls")
    with smtp_server(tls=tls, auth=True) as (mailbox, port), webhook_receiver() as (hooks, url):
        result = _run(_configure(fed, port, url, tls.ca))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"ok     mail-officers (smtp to compliance@secom.example via 127.0.0.1:{port})",
        f"ok     webhook-soc (webhook {url.removesuffix('/hooks/invsync')}/…)",
    ]
    (message,) = mailbox.messages
    assert "secom: test" in str(message["Subject"])
    (event,) = hooks.events
    assert event["kind"] == "test" and event["agent_party"] == "secom"
    assert event["occurrence"] == event["time"] and event["time"].endswith("Z")
    assert hooks.bad_signatures == 0


def test_a_channel_down_exits_3_after_trying_the_others(fed: Path) -> None:
    tls = server_tls(fed / "smtp-tls")
    with webhook_receiver() as (hooks, url):
        result = _run(_configure(fed, free_port(), url, tls.ca))  # no SMTP server listens
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAILED mail-officers: mail via 127.0.0.1:")
    assert lines[0].endswith("Connection refused")
    assert lines[1] == f"ok     webhook-soc (webhook {url.removesuffix('/hooks/invsync')}/…)"
    assert len(hooks.events) == 1
    assert result.stderr.startswith("error: 1 of 2 channel(s) failed: mail-officers\nhint: ")
    assert "Traceback" not in result.stderr


def test_no_channel_or_a_bad_one_exits_2(fed: Path) -> None:
    result = _run(fed / "secom.toml")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {fed / 'secom.toml'}: no [[notify]] entry to test\n")
    config = _configure(fed, 25, "http://example.net/hook", fed / "ca.pem")
    result = _run(config)
    assert result.returncode == 2
    assert "notify[1].url: http:// sends in clear text: only for a loopback host" in result.stderr


TOKEN = "T0KEN-b7c1e9d2a4f6"


def test_a_token_in_the_webhook_url_is_never_shown(
    fed: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A Slack or Teams webhook's URL is its credential: not in status, logs, or the database.
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)
    with webhook_receiver() as (hooks, url):
        hooks.status = 503
        secret = f"{url}/{TOKEN}?token={TOKEN}"
        config_path = _configure(fed, free_port(), secret, fed / "ca.pem")
        config = load_agent_config(config_path)
        with AgentStore(config.database) as store, caplog.at_level(logging.INFO):
            notifier = Notifier(config.notify, store.notifications, "secom", lambda: NOW)
            notifier.enqueue([Event("cycle-failing", "secom", NOW, "3 cycles failed")])
            notifier.flush()
            (_, soc) = store.notifications.channel_states(["mail-officers", "webhook-soc"])
            stored = store.db.execute("SELECT last_error FROM notify_outbox").fetchall()
    assert soc.last_error is not None and "HTTP 503" in soc.last_error
    assert "webhook-soc: POST http://127.0.0.1:" in caplog.text
    shown = [soc.last_error, str(stored), caplog.text]
    for fmt in ("text", "json"):
        result = CliRunner().invoke(
            invsync, ["status", "--config", str(config_path), "--offline", "--format", fmt]
        )
        assert result.exit_code == 0, result.output
        assert "webhook-soc" in result.output and "HTTP 503" in result.output
        shown.append(result.output)
    assert [TOKEN in text for text in shown] == [False] * len(shown)


def test_a_broken_webhook_answer_fails_its_channel_and_the_next_is_tried(fed: Path) -> None:
    with raw_http(b"garbage\r\n\r\n") as (peer, broken), webhook_receiver() as (hooks, url):
        entries = f"""
[[notify]]
name = "broken"
kind = "webhook"
url = "http://127.0.0.1:{broken}/hook"
secret_env = "INVSYNC_TEST_HOOK"

[[notify]]
name = "soc"
kind = "webhook"
url = "{url}"
secret_env = "INVSYNC_TEST_HOOK"
"""
        config = fed / "secom.toml"
        config.write_text(config.read_text() + entries)
        result = _run(config)
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"FAILED broken: POST http://127.0.0.1:{broken}/…: a broken HTTP answer (BadStatusLine)"
    )
    assert result.stdout.splitlines()[1].startswith("ok     soc ")
    assert len(peer.messages) == 1 and len(hooks.events) == 1
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


def test_a_secret_file_open_to_others_is_refused_as_agent_run_does(fed: Path) -> None:
    config = _configure(fed, free_port(), "http://127.0.0.1:9/hook", fed / "ca.pem")
    (fed / "smtp-password").chmod(0o644)
    result = _run(config)
    assert result.returncode == 2
    assert "notify[0].password_file: " in result.stderr
    assert "open to group or others" in result.stderr
