"""One send's whole limit (`timeout_seconds`): a socket timeout bounds each read or write, not
a dialogue of many, so a timer shuts down the send's socket when the time is up; whatever the
send was waiting for then fails at once. Only the host name's lookup is outside it."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from types import TracebackType


class Deadline:
    """Use as `with Deadline(seconds) as deadline:` around one send, its sockets opened by
    `connect` (or given to `watch`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._end = time.monotonic() + seconds
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:  # once cancelled here, no shutdown can reach a socket closed after
            self._timer.cancel()
            self._sockets.clear()
        self._timer.join()

    def left(self) -> float:
        """The seconds left, as one operation's timeout (never 0, which means non-blocking)."""
        return max(self._end - time.monotonic(), 0.001)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def connect(self, host: str, port: int, context: ssl.SSLContext | None = None) -> socket.socket:
        """A TCP connection, with TLS from the start if `context`, within the time left."""
        sock = socket.create_connection((host, port), timeout=self.left())
        self.watch(sock)
        return sock if context is None else self.wrap(sock, context, host)

    def wrap(self, sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
        """`sock` upgraded to TLS, its handshake within the time left."""
        sock.settimeout(self.left())
        tls = context.wrap_socket(sock, server_hostname=host)
        self.watch(tls)
        return tls

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    """The descriptor shut down, not closed: the thread blocked on it wakes with an error and
    still owns it. `socket.socket.shutdown`, not an SSLSocket's own, which would drop its TLS
    state under the reading thread."""
    with contextlib.suppress(OSError):  # closed, or detached into the TLS socket replacing it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
