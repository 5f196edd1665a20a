"""`[[notify]]` and `[notify_settings]` in the agent's configuration file: what loads, and every
refusal naming the file, the entry and the key."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.config.keyfiles import check_agent_keys
from invsync.agent.config.notify import (
    CommandChannel,
    NotifySettings,
    SmtpChannel,
    WebhookChannel,
)
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.reload import changes
from invsync.agent.errors import ConfigError
from invsync.agent.notify.channels import send
from invsync.agent.notify.events import Event

SMTP = """
[[notify]]
name = "mail-officers"
kind = "smtp"
host = "smtp.secom.example"
security = "starttls"
from = "invsync@secom.example"
to = ["compliance@secom.example"]
username = "invsync"
password_file = "secrets/smtp-password"
severities = ["error", "warning"]
"""
WEBHOOK = """
[[notify]]
name = "soc"
kind = "webhook"
url = "https://soc.secom.example/hooks/invsync"
secret_env = "INVSYNC_WEBHOOK_SECRET"
codes = ["missing-at-subordinate"]
events = ["finding-opened", "cycle-failing"]
"""
COMMAND = """
[[notify]]
name = "pager"
kind = "command"
command = ["bin/page", "--team", "ca"]
"""


def _load(fed: Path, extra: str) -> object:
    path, first = fed / "secom.toml", fed / "secom.toml.first"
    if not first.exists():
        first.write_text(path.read_text())
    path.write_text(first.read_text() + extra)  # each test's entries on the file as it came
    return load_agent_config(path).notify


def _fails(fed: Path, extra: str, message: str) -> str:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(fed, extra)
    assert str(caught.value).startswith(f"{fed / 'secom.toml'}: ")
    return str(caught.value)


def test_the_three_kinds_and_the_settings_load(fed: Path) -> None:
    settings = "\n[notify_settings]\nfailing_cycles = 5\ninitial_backoff_seconds = 30\n"
    notify = _load(fed, SMTP + WEBHOOK + COMMAND + settings)
    mail, hook, page = notify.channels  # type: ignore[attr-defined]
    assert isinstance(mail, SmtpChannel) and isinstance(hook, WebhookChannel)
    assert isinstance(page, CommandChannel)
    assert (mail.port, mail.security, mail.username) == (587, "starttls", "invsync")
    assert mail.password is not None and mail.password.file == fed / "secrets" / "smtp-password"
    assert mail.wants.severities == {"error", "warning"} and mail.wants.codes == frozenset()
    assert hook.secret.env == "INVSYNC_WEBHOOK_SECRET" and hook.wants.severities == {"error"}
    assert hook.wants.events == {"finding-opened", "cycle-failing"}
    assert page.argv == (str(fed / "bin" / "page"), "--team", "ca")
    assert notify.settings == NotifySettings(5, 30.0)  # type: ignore[attr-defined]


def test_no_notify_entries_is_no_channel(fed: Path) -> None:
    assert load_agent_config(fed / "secom.toml").notify.channels == ()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ('kind = "smtp"', 'kind = "sms"'),
            r"notify\[0\]\.kind: expected one of command, smtp, webhook, got 'sms'",
        ),
        (
            ('security = "starttls"', 'security = "none"'),
            r"notify\[0\]\.security: 'none' sends in clear text: only for a loopback host, "
            r"not 'smtp.secom.example' \(notify entry 'mail-officers'\)",
        ),
        (
            ('severities = ["error", "warning"]', 'severities = ["fatal"]'),
            r"notify\[0\]\.severities\[0\]: unknown value 'fatal' \(error, warning, notice\)",
        ),
        (
            ('to = ["compliance@secom.example"]', "to = []"),
            r"notify\[0\]\.to: needs at least one address",
        ),
        (
            ('to = ["compliance@secom.example"]', 'to = ["nobody"]'),
            r"notify\[0\]\.to\[0\]: 'nobody' is no address",
        ),
        (
            ('username = "invsync"\n', ""),
            r"notify\[0\]\.username: username and a password_file or password_env go together",
        ),
        (
            ("host = ", "port = 70000\nhost = "),
            r"notify\[0\]\.port: must be at most 65535, got 70000",
        ),
        (
            ("host = ", "bcc = []\nhost = "),
            r"notify\[0\]\.bcc: unknown key \(notify entry 'mail-officers'\)",
        ),
        (
            ('password_file = "secrets/smtp-password"', 'password_file = "s"\npassword_env = "P"'),
            r"notify\[0\]\.password_env: give password_file or password_env, not both",
        ),
    ],
)
def test_a_bad_smtp_entry_names_its_key(fed: Path, edit: tuple[str, str], message: str) -> None:
    _fails(fed, SMTP.replace(*edit), message)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("https://soc", "http://soc"),
            r"notify\[1\]\.url: http:// sends in clear text: only for a loopback host",
        ),
        (
            ("https://soc.secom.example/hooks/invsync", "ftp://x"),
            r"notify\[1\]\.url: expected an https:// URL, got 'ftp://x'",
        ),
        (
            ('secret_env = "INVSYNC_WEBHOOK_SECRET"\n', ""),
            r"notify\[1\]\.secret_file: missing: a webhook signs every event \(or secret_env\) "
            r"\(notify entry 'soc'\)",
        ),
        (
            ('codes = ["missing-at-subordinate"]', 'codes = ["no-such-code"]'),
            r"notify\[1\]\.codes\[0\]: unknown value 'no-such-code' \(see `invsync rules`\)",
        ),
        (
            ('events = ["finding-opened", "cycle-failing"]', "events = []"),
            r"notify\[1\]\.events: must name at least one",
        ),
        (
            ('events = ["finding-opened", "cycle-failing"]', 'events = ["test"]'),
            r"notify\[1\]\.events: 'test' alone: the daemon would send nothing on this channel",
        ),
        (
            ("https://soc.secom.example/hooks/invsync", "https://bot:T0KEN@soc.secom.example/h"),
            r"notify\[1\]\.url: holds a user name or password: the secret signs the events "
            r"\(notify entry 'soc'\)",
        ),
        (
            ("soc.secom.example/", "soc.secom.example:99999/"),
            r"notify\[1\]\.url: its port is no number from 1 to 65535 "
            r"\('https://soc.secom.example:…/…'\)",
        ),
        (
            ("soc.secom.example/", "soc.secom.example:https/"),
            r"notify\[1\]\.url: its port is no number from 1 to 65535",
        ),
        (
            ("soc.secom.example/", "soc.secom.example:0/"),
            r"notify\[1\]\.url: its port is no number from 1 to 65535",
        ),
        (
            ("https://soc.secom.example/hooks/invsync", "ftp://soc.secom.example/T0KEN"),
            r"notify\[1\]\.url: expected an https:// URL, got 'ftp://soc.secom.example/…'",
        ),
    ],
)
def test_a_bad_webhook_entry_names_its_key(fed: Path, edit: tuple[str, str], message: str) -> None:
    assert "T0KEN" not in _fails(fed, SMTP + WEBHOOK.replace(*edit), message)


def test_names_are_unique_and_the_settings_checked(fed: Path) -> None:
    _fails(fed, SMTP + SMTP, r"notify\[1\]\.name: 'mail-officers' names an earlier entry too")
    _fails(
        fed,
        COMMAND.replace('["bin/page", "--team", "ca"]', "[]"),
        r"notify\[0\]\.command: needs a program",
    )
    settings = "\n[notify_settings]\ninitial_backoff_seconds = 60\nmax_backoff_seconds = 10\n"
    _fails(
        fed,
        COMMAND + settings,
        r"notify_settings\.max_backoff_seconds: must be at least initial_backoff_seconds \(60\)",
    )
    _fails(
        fed,
        COMMAND + "\n[notify_settings]\nfailing_cycles = 0\n",
        r"notify_settings\.failing_cycles: must be at least 1, got 0",
    )


def test_clear_text_is_allowed_on_loopback(fed: Path) -> None:
    local = SMTP.replace("smtp.secom.example", "127.0.0.1").replace('"starttls"', '"none"')
    hook = WEBHOOK.replace("https://soc.secom.example", "http://localhost:8080")
    notify = _load(fed, local + hook)
    assert [c.name for c in notify.channels] == ["mail-officers", "soc"]  # type: ignore[attr-defined]


def test_a_reload_says_the_channels_changed(fed: Path) -> None:
    before = load_agent_config(fed / "secom.toml")
    _load(fed, COMMAND)
    after = load_agent_config(fed / "secom.toml")
    assert changes(before, after) == "notify"


def test_a_secret_file_must_be_there_and_private(fed: Path) -> None:
    password = fed / "secrets" / "smtp-password"
    _load(fed, SMTP)
    config = load_agent_config(fed / "secom.toml")
    with pytest.raises(ConfigError, match=r"notify\[0\]\.password_file: file .*: cannot read"):
        check_agent_keys(config)
    password.parent.mkdir()
    password.write_text("s3cret\n")
    password.chmod(0o644)
    with pytest.raises(
        ConfigError, match=r"notify\[0\]\.password_file: .* open to group or others"
    ):
        check_agent_keys(config)
    password.chmod(0o600)
    check_agent_keys(config)


def test_a_command_does_not_get_the_other_channels_secret_variables(
    fed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp = SMTP.replace('password_file = "secrets/smtp-password"', 'password_env = "SMTP_PW"')
    script = fed / "env.py"
    script.write_text(
        "import json, os, sys\n"
        f"json.dump(sorted(os.environ), open({str(fed / 'seen.json')!r}, 'w'))\n"
    )
    command = COMMAND.replace('"bin/page", "--team", "ca"', f'"{sys.executable}", "{script}"')
    notify = _load(fed, smtp + WEBHOOK + command)
    page = notify.channels[2]  # type: ignore[attr-defined]
    assert isinstance(page, CommandChannel)
    assert page.hidden_env == {"SMTP_PW", "INVSYNC_WEBHOOK_SECRET"}
    monkeypatch.setenv("SMTP_PW", "s3cret")
    monkeypatch.setenv("INVSYNC_WEBHOOK_SECRET", "k3y")
    monkeypatch.setenv("INVSYNC_SOMETHING_ELSE", "kept")
    event = Event("test", "secom", datetime(2021, 3, 1, tzinfo=UTC), "a test")
    send(page, event, timeout=10)
    seen = json.loads((fed / "seen.json").read_text())
    assert "INVSYNC_SOMETHING_ELSE" in seen
    assert "SMTP_PW" not in seen and "INVSYNC_WEBHOOK_SECRET" not in seen
