"""`invsync notify test`, run as a process against a real SMTP server (STARTTLS, AUTH with a
password file) and a real webhook receiver: each channel's line, and the exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.notify_receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    free_port,
    server_tls,
    smtp_server,
    webhook_receiver,
)


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
        f"ok     webhook-soc (webhook {url})",
    ]
    (message,) = mailbox.messages
    assert "secom: test" in str(message["Subject"])
    (event,) = hooks.events
    assert event["kind"] == "test" and event["agent_party"] == "secom"
    assert hooks.bad_signatures == 0


def test_a_channel_down_exits_3_after_trying_the_others(fed: Path) -> None:
    tls = server_tls(fed / "smtp-tls")
    with webhook_receiver() as (hooks, url):
        result = _run(_configure(fed, free_port(), url, tls.ca))  # no SMTP server listens
    assert result.returncode == 3
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAILED mail-officers: mail-officers: mail via 127.0.0.1:")
    assert lines[0].endswith("Connection refused")
    assert lines[1] == f"ok     webhook-soc (webhook {url})"
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
