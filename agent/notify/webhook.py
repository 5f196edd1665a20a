"""The webhook channel: the event's JSON POSTed to a URL, signed so that a receiver can check it
came from this agent: `X-Invsync-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`
under the entry's shared secret. Any 2xx answer is sent; a redirect is a failure (it would drop
the body or send it where nobody configured). Straight to the URL's host: no proxy is used.

The URL is only ever shown as `shown_url`: its path and query often hold a token."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
from contextlib import suppress
from urllib.parse import urlsplit

from invsync.agent.config.notify import WebhookChannel
from invsync.agent.notify.deadline import Deadline
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError, read_secret

SIGNATURE_HEADER = "X-Invsync-Signature"
ANSWER_BYTES = 65536  # the receiver's answer is not read further: a status is all it says
REASON_CHARS = 100


def signature(secret: str, body: bytes) -> str:
    """The header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_event(channel: WebhookChannel, event: Event, timeout: float) -> None:
    body = event.to_bytes()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "invsync-agent",
        "X-Invsync-Event": event.kind,
        SIGNATURE_HEADER: signature(read_secret(channel.secret, channel.name), body),
    }
    where = f"{channel.name}: POST {channel.shown_url}"
    with Deadline(timeout) as deadline:
        try:
            status, reason = _post(channel, body, headers, deadline)
        except (OSError, http.client.HTTPException, ValueError) as e:
            said = (
                f"not done within timeout_seconds ({timeout:g} s)" if deadline.expired else _why(e)
            )
            raise SendError(f"{where}: {said}") from e
    if not 200 <= status < 300:
        shown = "".join(c if c.isprintable() else "?" for c in reason[:REASON_CHARS])
        raise SendError(f"{where}: HTTP {status} {shown}".rstrip())


def _post(
    channel: WebhookChannel, body: bytes, headers: dict[str, str], deadline: Deadline
) -> tuple[int, str]:
    """The answer's status and reason; its connection opened within the deadline and closed."""
    parts = urlsplit(channel.url)
    host, https = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    context = _context(channel) if https else None
    # The classes only for their Host header: the socket is given them, never opened by them.
    connection = (
        http.client.HTTPSConnection(host, port, timeout=deadline.seconds, context=context)
        if context is not None
        else http.client.HTTPConnection(host, port, timeout=deadline.seconds)
    )
    try:
        connection.sock = deadline.connect(host, port, context)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        answer = connection.getresponse()
        # Taken or not is said by the status: a body that breaks off after it changes nothing.
        with suppress(OSError, http.client.HTTPException):
            answer.read(ANSWER_BYTES)
        return answer.status, answer.reason
    finally:
        connection.close()


def _why(error: Exception) -> str:
    """What went wrong, without the URL (a foreign message might quote it)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"{error.reason}: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, http.client.HTTPException):
        return f"a broken HTTP answer ({type(error).__name__})"
    return str(error)[:REASON_CHARS] or type(error).__name__


def _context(channel: WebhookChannel) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=None if channel.ca is None else str(channel.ca))
