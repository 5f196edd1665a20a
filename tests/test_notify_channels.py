"""Each notification channel against a real receiver on loopback: aiosmtpd for mail (clear text
on loopback, STARTTLS with AUTH and a password file, TLS from the start), an HTTP server that
checks the HMAC signature for the webhook, a real program for the command."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.config.notify import (
    CommandChannel,
    Secret,
    SmtpChannel,
    Wants,
    WebhookChannel,
)
from invsync.agent.notify.channels import describe, send, wants
from invsync.agent.notify.events import Event, event_from_bytes
from invsync.agent.notify.secret import SendError
from invsync.agent.notify.webhook import signature
from tests.notify_receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    dripping_server,
    free_port,
    raw_http,
    scripted_smtp,
    server_tls,
    smtp_server,
    webhook_receiver,
)

NOW = datetime(2021, 3, 1, 9, 30, tzinfo=UTC)
EVENT = Event(
    "finding-opened",
    "secom",
    NOW,
    "not in JPRS's list",
    pairing="secom-jprs",
    report_id="ab" * 32,
    code="missing-at-subordinate",
    sha256="21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62",
    subject="CN=JPRS Domain Validation Authority - G4",
    severity="error",
    party="jprs",
    due=datetime(2020, 7, 17, tzinfo=UTC),
    occurrence="2021-01-01T00:00:00Z",
)


def _smtp(port: int, security: str = "none", **kwargs: object) -> SmtpChannel:
    return SmtpChannel(
        "mail",
        Wants(),
        kwargs.pop("host", "127.0.0.1"),  # type: ignore[arg-type]
        port,
        security,
        "invsync@secom.example",
        ("compliance@secom.example", "ca-team@secom.example"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_event_json_round_trips_and_keeps_its_id() -> None:
    again = event_from_bytes(EVENT.to_bytes())
    assert again == EVENT
    assert again.event_id == EVENT.event_id
    obj = json.loads(EVENT.to_bytes())
    assert obj["schema"] == "invsync-event/1"
    assert obj["due"] == "2020-07-17T00:00:00Z"
    assert obj["event_id"] == EVENT.event_id


def test_a_mail_arrives_at_a_real_smtp_server() -> None:
    with smtp_server() as (mailbox, port):
        send(_smtp(port), EVENT, timeout=10)
    (message,) = mailbox.messages
    assert (
        " ".join(str(message["Subject"]).split())
        == "invsync secom secom-jprs: finding-opened missing-at-subordinate 21C066332D6B92DD"
    )
    assert message["To"] == "compliance@secom.example, ca-team@secom.example"
    text = message.get_payload(decode=True)
    assert isinstance(text, bytes)
    assert b'"event_id": "' + EVENT.event_id.encode() in text


def test_starttls_with_auth_and_a_password_file(tmp_path: Path) -> None:
    tls = server_tls(tmp_path / "tls")
    (tmp_path / "password").write_text(SMTP_PASSWORD + "\n")
    secret = Secret("agent.toml: notify[0].password_file", file=tmp_path / "password")
    with smtp_server(tls=tls, auth=True) as (mailbox, port):
        channel = _smtp(port, "starttls", username=SMTP_USER, password=secret, ca=tls.ca)
        send(channel, EVENT, timeout=10)
    assert len(mailbox.messages) == 1


def test_a_wrong_password_is_the_servers_answer(tmp_path: Path) -> None:
    tls = server_tls(tmp_path / "tls")
    (tmp_path / "password").write_text("wrong\n")
    secret = Secret("agent.toml: notify[0].password_file", file=tmp_path / "password")
    with smtp_server(tls=tls, auth=True) as (mailbox, port):
        channel = _smtp(port, "starttls", username=SMTP_USER, password=secret, ca=tls.ca)
        with pytest.raises(SendError, match=r"mail: mail via 127.0.0.1:\d+: server answered 535"):
            send(channel, EVENT, timeout=10)
    assert mailbox.messages == []


def test_starttls_refuses_a_certificate_it_does_not_trust(tmp_path: Path) -> None:
    tls = server_tls(tmp_path / "tls")
    refused = pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED")
    with smtp_server(tls=tls) as (mailbox, port), refused:
        send(_smtp(port, "starttls"), EVENT, timeout=10)  # no `ca`: the system's CAs
    assert mailbox.messages == []


def test_starttls_is_never_given_up_for_clear_text() -> None:
    refused = pytest.raises(SendError, match="offers no STARTTLS: refused to send in clear text")
    with smtp_server() as (mailbox, port), refused:  # it offers no STARTTLS
        send(_smtp(port, "starttls"), EVENT, timeout=10)
    assert mailbox.messages == []


def test_tls_from_the_start(tmp_path: Path) -> None:
    tls = server_tls(tmp_path / "tls")
    with smtp_server(tls=tls, implicit_tls=True) as (mailbox, port):
        send(_smtp(port, "tls", host="localhost", ca=tls.ca), EVENT, timeout=10)
    assert len(mailbox.messages) == 1


def test_a_refused_recipient_and_a_server_that_is_down() -> None:
    with smtp_server() as (mailbox, port):
        mailbox.refuse = True
        with pytest.raises(SendError, match=r"mail via .*: .*550"):
            send(_smtp(port), EVENT, timeout=10)
    with pytest.raises(SendError, match=r"mail: mail via 127.0.0.1:\d+: Connection refused"):
        send(_smtp(free_port()), EVENT, timeout=10)


def _webhook(url: str, secret: Secret) -> WebhookChannel:
    return WebhookChannel("soc", Wants(), url, secret)


def test_a_webhook_post_carries_a_signature_the_receiver_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)
    secret = Secret("agent.toml: notify[1].secret_env", env="INVSYNC_TEST_HOOK")
    with webhook_receiver() as (hooks, url):
        send(_webhook(url, secret), EVENT, timeout=10)
    assert hooks.bad_signatures == 0
    assert [e["event_id"] for e in hooks.events] == [EVENT.event_id]
    body = EVENT.to_bytes()
    expected = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert signature(WEBHOOK_SECRET, body) == f"sha256={expected}"


def test_an_https_webhook_verifies_the_receivers_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)
    secret = Secret("agent.toml: notify[1].secret_env", env="INVSYNC_TEST_HOOK")
    tls = server_tls(tmp_path / "tls")
    with webhook_receiver(tls=tls) as (hooks, url):
        assert url.startswith("https://localhost:")
        with pytest.raises(SendError, match="CERTIFICATE_VERIFY_FAILED"):
            send(_webhook(url, secret), EVENT, timeout=10)  # the system's CAs do not know it
        send(WebhookChannel("soc", Wants(), url, secret, ca=tls.ca), EVENT, timeout=10)
    assert [e["event_id"] for e in hooks.events] == [EVENT.event_id]


def test_a_webhook_with_the_wrong_secret_is_refused_by_the_receiver(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("not the shared one")
    secret = Secret("agent.toml: notify[1].secret_file", file=tmp_path / "secret")
    with (
        webhook_receiver() as (hooks, url),
        pytest.raises(SendError, match=r"soc: POST http://127.0.0.1:\d+/…: HTTP 401 Unauthorized$"),
    ):
        send(_webhook(url, secret), EVENT, timeout=10)
    assert hooks.bad_signatures == 1
    assert hooks.events == []


def test_a_missing_secret_names_its_key(tmp_path: Path) -> None:
    secret = Secret("agent.toml: notify[1].secret_env", env="INVSYNC_TEST_UNSET_VARIABLE")
    with pytest.raises(
        SendError,
        match=r"soc: agent.toml: notify\[1\].secret_env: \$INVSYNC_TEST_UNSET_VARIABLE is not set",
    ):
        send(_webhook("http://127.0.0.1:9/", secret), EVENT, timeout=10)
    gone = Secret("agent.toml: notify[1].secret_file", file=tmp_path / "nope")
    with pytest.raises(SendError, match=r"secret_file: cannot read .*nope: No such file"):
        send(_webhook("http://127.0.0.1:9/", gone), EVENT, timeout=10)


def test_a_command_reads_the_event_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "event.json"
    script = f"import sys; open({str(out)!r}, 'wb').write(sys.stdin.buffer.read())"
    send(CommandChannel("page", Wants(), (sys.executable, "-c", script)), EVENT, timeout=10)
    assert event_from_bytes(out.read_bytes()) == EVENT


def test_a_failing_command_says_its_exit_status_and_last_error_line() -> None:
    script = "import sys; sys.stderr.write('pager down\\n'); sys.exit(4)"
    channel = CommandChannel("page", Wants(), (sys.executable, "-c", script))
    with pytest.raises(SendError, match=r"page: .*python.* exited 4: pager down"):
        send(channel, EVENT, timeout=10)
    missing = CommandChannel("page", Wants(), ("/nonexistent/pager",))
    with pytest.raises(SendError, match="page: cannot run /nonexistent/pager: No such file"):
        send(missing, EVENT, timeout=10)


def test_what_a_channel_wants() -> None:
    errors_only = Wants()
    assert wants(_smtp(25), EVENT)
    warning = Event("overdue", "secom", NOW, "m", code="doppelganger-untracked", severity="warning")
    assert not wants(_smtp(25), warning)
    some = Wants(frozenset({"error", "warning"}), frozenset({"missing-at-subordinate"}))
    channel = CommandChannel("page", some, ("true",))
    assert wants(channel, EVENT) and not wants(channel, warning)
    only_cycles = CommandChannel(
        "page", Wants(errors_only.severities, events=frozenset({"cycle-failing"})), ("true",)
    )
    failing = Event("cycle-failing", "secom", NOW, "3 cycles failed")
    test = Event("test", "secom", NOW, "a test")
    assert (
        wants(only_cycles, failing) and wants(only_cycles, test) and not wants(only_cycles, EVENT)
    )
    assert (
        describe(_smtp(25))
        == "smtp to compliance@secom.example, ca-team@secom.example via 127.0.0.1:25"
    )


@pytest.mark.parametrize("quit_reply", [b"421 closing, busy\r\n", b""])
def test_a_mail_the_server_took_is_sent_whatever_its_quit_answer(quit_reply: bytes) -> None:
    # A failure here would send the mail again at every retry: one more copy each time.
    with scripted_smtp(quit_reply) as (peer, port):
        send(_smtp(port), EVENT, timeout=1)
    (message,) = peer.messages
    assert b"finding-opened" in message


def test_a_mail_opens_with_the_certificate_it_is_about() -> None:
    with smtp_server() as (mailbox, port):
        send(_smtp(port), EVENT, timeout=10)
    text = mailbox.messages[0].get_payload(decode=True)
    assert isinstance(text, bytes)
    assert (
        text.decode()
        .replace("\r\n", "\n")
        .startswith(
            "CN=JPRS Domain Validation Authority - G4\nSHA-256 21C066332D6B92DD…\n\n"
            "not in JPRS's list\n"
        )
    )


def test_a_server_without_auth_is_told_as_such(tmp_path: Path) -> None:
    (tmp_path / "password").write_text(SMTP_PASSWORD + "\n")
    secret = Secret("agent.toml: notify[0].password_file", file=tmp_path / "password")
    with scripted_smtp(b"221 bye\r\n") as (peer, port):
        channel = _smtp(port, username=SMTP_USER, password=secret)
        with pytest.raises(SendError, match=r"the server offers no AUTH, and the entry has a user"):
            send(channel, EVENT, timeout=10)
    assert peer.messages == []


def test_timeout_seconds_bounds_the_whole_mail_dialogue() -> None:
    # Each read gets a byte within 0.2 s: only a limit on the whole dialogue stops it.
    with dripping_server(b"220 " + b"s" * 100) as (_, port):
        started = time.monotonic()
        with pytest.raises(
            SendError, match=r"mail via .*: not done within timeout_seconds \(1 s\)"
        ):
            send(_smtp(port), EVENT, timeout=1)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"garbage\r\n\r\n", r"a broken HTTP answer \(BadStatusLine\)"),
        (b"", r"a broken HTTP answer \(RemoteDisconnected\)"),
        (b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere/\r\n\r\n", "HTTP 302 Found"),
    ],
)
def test_a_broken_or_redirecting_webhook_answer_is_a_send_error(
    answer: bytes, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)
    secret = Secret("agent.toml: notify[1].secret_env", env="INVSYNC_TEST_HOOK")
    with raw_http(answer) as (peer, port):
        channel = _webhook(f"http://127.0.0.1:{port}/hooks/T0KEN", secret)
        with pytest.raises(SendError, match=rf"^soc: POST http://127.0.0.1:{port}/…: {said}$"):
            send(channel, EVENT, timeout=10)
    assert len(peer.messages) == 1


def test_timeout_seconds_bounds_the_whole_webhook_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_TEST_HOOK", WEBHOOK_SECRET)
    secret = Secret("agent.toml: notify[1].secret_env", env="INVSYNC_TEST_HOOK")
    with dripping_server(b"HTTP/1.1 200 " + b"O" * 100) as (_, port):
        started = time.monotonic()
        with pytest.raises(
            SendError, match=r"POST http://127.0.0.1:\d+: not done within timeout_seconds \(1 s\)$"
        ):
            send(_webhook(f"http://127.0.0.1:{port}/", secret), EVENT, timeout=1)
        assert time.monotonic() - started < 3
