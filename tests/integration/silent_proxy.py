"""A loopback TCP proxy that can fall silent: every connection stays open, nothing gets through.

That is what a hung peer or a firewall dropping packets looks like to gRPC: no reset, no close,
just no answer. Only keepalive can notice it. While silent the proxy still reads both sides (and
drops what it reads) so that it can tell when the server gives a connection up.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time

CHUNK = 65536
POLL_SECONDS = 0.05


class SilentProxy:
    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.server_hung_up = threading.Event()
        self.server_hung_up_at = 0.0  # time.monotonic() when the server closed, while silent
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self) -> float:
        """Stop forwarding from now on; returns the time.monotonic() at which it did."""
        self._silent.set()
        return time.monotonic()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        other = {client.fileno(): upstream, upstream.fileno(): client}
        with selectors.DefaultSelector() as selector:
            for sock in (client, upstream):
                selector.register(sock, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in selector.select(POLL_SECONDS):
                    sock = client if key.fd == client.fileno() else upstream
                    if not self._forward(sock, other[key.fd], from_server=sock is upstream):
                        client.close()
                        upstream.close()
                        return

    def _forward(self, sock: socket.socket, to: socket.socket, from_server: bool) -> bool:
        """Pass what `sock` has on to `to` unless silent; False once either side is gone."""
        try:
            data = sock.recv(CHUNK)
            if data and not self._silent.is_set():
                to.sendall(data)
        except OSError:
            data = b""
        if not data and from_server and self._silent.is_set() and not self._closed.is_set():
            self.server_hung_up_at = time.monotonic()
            self.server_hung_up.set()
        return bool(data)
