"""Real receivers of notifications on loopback: an SMTP server (aiosmtpd, with STARTTLS, TLS and
AUTH when asked) that keeps every message it took, and an HTTP server that checks each POST's
`X-Invsync-Signature` and keeps the events whose signature verified.

Both can be made to fail (the webhook answers 503, the SMTP server refuses the recipient) and
stopped, so that the tests see a channel down and back up.
"""

from __future__ import annotations

import contextlib
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


@dataclass
class RawPeer:
    """What a raw-socket receiver saw: the messages a scripted SMTP server took."""

    messages: list[bytes] = field(default_factory=list)
    connections: int = 0


@contextmanager
def _raw_server(serve: Any) -> Iterator[tuple[RawPeer, int]]:
    """A loopback TCP server that runs `serve(conn, peer, stop)` for each connection, in its
    own thread, and its port."""
    peer, stop = RawPeer(), threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    threads: list[threading.Thread] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            peer.connections += 1
            thread = threading.Thread(target=_serving, args=(serve, conn, peer, stop), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield peer, listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        for thread in threads:
            thread.join(5)
        listener.close()


def _serving(serve: Any, conn: socket.socket, peer: RawPeer, stop: threading.Event) -> None:
    with conn, contextlib.suppress(OSError):  # the client hung up: what it saw is the test's
        serve(conn, peer, stop)


def scripted_smtp(quit_reply: bytes) -> Any:
    """A plain SMTP server that takes every message (250 to its DATA) and answers QUIT with
    `quit_reply` (b"": no answer at all)."""

    def serve(conn: socket.socket, peer: RawPeer, stop: threading.Event) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted ESMTP\r\n")
        while line := reader.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                lines = []
                while (data := reader.readline()) not in (b".\r\n", b""):
                    lines.append(data)
                peer.messages.append(b"".join(lines))
                conn.sendall(b"250 taken\r\n")
            elif verb == b"QUIT":
                if quit_reply:
                    conn.sendall(quit_reply)
                else:
                    stop.wait(30)  # never answered
                return
            else:
                conn.sendall(b"250 ok\r\n")

    return _raw_server(serve)


def dripping_server(first: bytes) -> Any:
    """A server that sends `first` one byte at a time, 0.2 s apart, and then nothing: every read
    gets a byte well within any socket timeout, the answer never ends."""

    def serve(conn: socket.socket, peer: RawPeer, stop: threading.Event) -> None:
        for byte in first:
            if stop.wait(0.2):
                return
            conn.sendall(bytes([byte]))
        stop.wait(30)

    return _raw_server(serve)


def raw_http(answer: bytes) -> Any:
    """An HTTP server that reads a request's head and body and answers `answer`, raw bytes
    (a broken status line, say), then hangs up."""

    def serve(conn: socket.socket, peer: RawPeer, stop: threading.Event) -> None:
        reader = conn.makefile("rb")
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        peer.messages.append(reader.read(length))
        conn.sendall(answer)

    return _raw_server(serve)
