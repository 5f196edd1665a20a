"""The mail channel: one message per event over SMTP, STARTTLS on the submission port or TLS
from the start (`security = "tls"`); the server's certificate is verified against the system's
CAs or the entry's `ca`. Clear text (`"none"`) is only ever configured for a loopback host."""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from invsync.agent.config.notify import SmtpChannel
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError, read_secret


def send_mail(channel: SmtpChannel, event: Event, timeout: float) -> None:
    message = _message(channel, event)
    try:
        with _connect(channel, timeout) as smtp:
            if channel.username is not None and channel.password is not None:
                smtp.login(channel.username, read_secret(channel.password, channel.name))
            smtp.send_message(message)
    except SendError:
        raise
    except (OSError, smtplib.SMTPException, ValueError) as e:
        where = f"{channel.host}:{channel.port}"
        raise SendError(f"{channel.name}: mail via {where}: {_reason(e)}") from e


def _connect(channel: SmtpChannel, timeout: float) -> smtplib.SMTP:
    if channel.security == "tls":
        return smtplib.SMTP_SSL(
            channel.host, channel.port, timeout=timeout, context=_context(channel)
        )
    smtp = smtplib.SMTP(channel.host, channel.port, timeout=timeout)
    try:
        if channel.security == "starttls":
            smtp.starttls(context=_context(channel))  # refused if not offered: never clear text
    except BaseException:
        smtp.close()
        raise
    return smtp


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
    shown = json.dumps(event.to_json(), indent=2, sort_keys=True)
    return f"{event.message}\n\nThe event as JSON:\n\n{shown}\n"


def _reason(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        said = (
            error.smtp_error.decode("utf-8", "replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        return f"server answered {error.smtp_code} {said}"
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return f"{error} (the server offers no STARTTLS: refused to send in clear text)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
