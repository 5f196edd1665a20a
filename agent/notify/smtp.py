"""The mail channel: one message per event over SMTP, STARTTLS on the submission port or TLS
from the start (`security = "tls"`); the server's certificate is verified against the system's
CAs or the entry's `ca`. Clear text (`"none"`) is only ever configured for a loopback host.

A message is sent once the server answered its DATA with 250: what the QUIT after it gets is no
failure, or every retry would deliver another copy."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from invsync.agent.config.notify import SmtpChannel
from invsync.agent.notify.deadline import Deadline
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError, read_secret
from invsync.agent.report.render.names import readable_dn


def send_mail(channel: SmtpChannel, event: Event, timeout: float) -> None:
    message = _message(channel, event)
    with Deadline(timeout) as deadline:
        with _failure(channel, deadline, "STARTTLS: refused to send in clear text"):
            smtp = _connect(channel, deadline)
        try:
            with _failure(channel, deadline, "AUTH, and the entry has a username"):
                if channel.username is not None and channel.password is not None:
                    smtp.login(channel.username, read_secret(channel.password, channel.name))
                smtp.send_message(message)
            _quit(smtp)
        finally:
            smtp.close()


class _Smtp(smtplib.SMTP):
    """Connected at once, within the deadline, with TLS from the start if `context`."""

    def __init__(
        self, channel: SmtpChannel, deadline: Deadline, context: ssl.SSLContext | None
    ) -> None:
        self.deadline, self.context = deadline, context
        super().__init__(channel.host, channel.port, timeout=deadline.seconds)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return self.deadline.connect(host, port, self.context)


def _connect(channel: SmtpChannel, deadline: Deadline) -> smtplib.SMTP:
    implicit = _context(channel) if channel.security == "tls" else None
    smtp = _Smtp(channel, deadline, implicit)
    try:
        if channel.security == "starttls":
            assert smtp.sock is not None
            smtp.sock.settimeout(deadline.left())  # the handshake within the time left
            smtp.starttls(context=_context(channel))  # refused if not offered: never clear text
            deadline.watch(smtp.sock)
    except BaseException:
        smtp.close()
        raise
    return smtp


def _quit(smtp: smtplib.SMTP) -> None:
    # The message is taken (250 to its DATA): a bad or missing answer to QUIT is no failure.
    with suppress(OSError, smtplib.SMTPException):
        smtp.quit()


@contextmanager
def _failure(channel: SmtpChannel, deadline: Deadline, unsupported: str) -> Iterator[None]:
    """What goes wrong as a SendError; `unsupported`: what a server that lacks an extension
    needed at this step does not offer."""
    try:
        yield
    except SendError:
        raise
    except (OSError, smtplib.SMTPException, ValueError) as e:
        if deadline.expired:
            reason = f"not done within timeout_seconds ({deadline.seconds:g} s)"
        elif isinstance(e, smtplib.SMTPNotSupportedError):
            reason = f"{e} (the server offers no {unsupported})"
        else:
            reason = _reason(e)
        where = f"{channel.host}:{channel.port}"
        raise SendError(f"{channel.name}: mail via {where}: {reason}") from e


def _context(channel: SmtpChannel) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=None if channel.ca is None else str(channel.ca))


def _message(channel: SmtpChannel, event: Event) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = event.summary()
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Date"] = format_datetime(event.time)
    message["Message-ID"] = make_msgid(idstring=event.event_id[:16], domain="invsync")
    message.set_content(_text(event))
    return message


def _text(event: Event) -> str:
    """The certificate first (a finding's message says "it ..."), then the message, then the
    event as JSON."""
    about = (
        f"{readable_dn(event.subject)}\nSHA-256 {event.sha256[:16]}…\n\n" if event.sha256 else ""
    )
    shown = json.dumps(event.to_json(), indent=2, sort_keys=True)
    return f"{about}{event.message}\n\nThe event as JSON:\n\n{shown}\n"


def _reason(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        said = (
            error.smtp_error.decode("utf-8", "replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return f"server answered {error.smtp_code} {said}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
