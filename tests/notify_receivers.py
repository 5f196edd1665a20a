"""Real receivers of notifications on loopback: an SMTP server (aiosmtpd, with STARTTLS, TLS and
AUTH when asked) that keeps every message it took, and an HTTP server that checks each POST's
`X-Invsync-Signature` and keeps the events whose signature verified.

Both can be made to fail (the webhook answers 503, the SMTP server refuses the recipient) and
stopped, so that the tests see a channel down and back up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from invsync.agent.exchange.pki import TlsFiles, make_federation

SMTP_USER = "invsync"
SMTP_PASSWORD = "correct horse battery staple"
WEBHOOK_SECRET = "webhook-shared-secret"


@dataclass
class Mailbox:
    messages: list[Message] = field(default_factory=list)
    refuse: bool = False  # answer RCPT with 550: the channel fails

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse:
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_tls(directory: Path) -> TlsFiles:
    """A CA (`.ca`) and a certificate for localhost and 127.0.0.1 signed by it."""
    return make_federation(directory, "localhost", [])["server"]


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)  # a refusal answered 535


@contextmanager
def smtp_server(
    *, tls: TlsFiles | None = None, implicit_tls: bool = False, auth: bool = False
) -> Iterator[tuple[Mailbox, int]]:
    """A running SMTP server on 127.0.0.1 and its port: plain, with STARTTLS required (`tls`),
    or TLS from the start (`implicit_tls`); `auth` requires LOGIN/PLAIN as SMTP_USER."""
    mailbox = Mailbox()
    kwargs: dict[str, Any] = {}
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        if not implicit_tls:
            kwargs.update(tls_context=context, require_starttls=True)
        else:
            kwargs.update(ssl_context=context)
    if auth:
        kwargs.update(authenticator=_authenticate, auth_required=True)
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


@dataclass
class Hooks:
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    status: int = 200  # what the receiver answers a POST with a good signature


def _handler(hooks: Hooks, secret: str) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(
                self.headers.get("X-Invsync-Signature", ""), "sha256=" + mac
            ):
                hooks.bad_signatures += 1
                self.send_response(401)
            elif hooks.status != 200:
                self.send_response(hooks.status)
            else:
                hooks.events.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output, not the receiver's

    return Receiver


@contextmanager
def webhook_receiver(
    secret: str = WEBHOOK_SECRET, tls: TlsFiles | None = None
) -> Iterator[tuple[Hooks, str]]:
    """A running HTTP receiver on loopback and its URL; HTTPS as localhost with `tls`."""
    hooks = Hooks()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hooks, secret))
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        scheme, host = ("https", "localhost") if tls else ("http", "127.0.0.1")
        yield hooks, f"{scheme}://{host}:{server.server_address[1]}/hooks/invsync"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
