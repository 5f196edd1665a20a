"""gRPC keepalive: the bound within which a silent peer is noticed, as channel options.

A peer that stops answering without closing the connection (a hung process, a firewall that
drops packets) is noticed `seconds` after the last bytes read at the latest, when a ping goes
out, plus `timeout_seconds` for its acknowledgement: within `bound_seconds`. The agent's client
and the server use the same settings, each from its own configuration file.
"""

from __future__ import annotations

from dataclasses import dataclass

from invsync.agent.tomlconf import Table

Options = list[tuple[str, int]]


@dataclass(frozen=True)
class Keepalive:
    """Ping after `seconds` without traffic; give the connection up `timeout_seconds` later."""

    seconds: int = 20
    timeout_seconds: int = 10

    @property
    def bound_seconds(self) -> int:
        """The longest a silent peer goes unnoticed while a call is open."""
        return self.seconds + self.timeout_seconds


def read_keepalive(table: Table) -> Keepalive:
    """`keepalive_seconds` and `keepalive_timeout_seconds` of the agent's [agent] or the server's
    [server] table: whole seconds, at least 1 (gRPC's option is milliseconds, 0 turns it off)."""
    default = Keepalive()
    return Keepalive(
        seconds=table.integer("keepalive_seconds", default.seconds),
        timeout_seconds=table.integer("keepalive_timeout_seconds", default.timeout_seconds),
    )


def client_options(keepalive: Keepalive) -> Options:
    return [
        *_pings(keepalive),
        # gRPC stops pinging after two pings without a data frame of its own; a quiet call (a
        # server still building its answer) would then lose its watchdog for good.
        ("grpc.http2.max_pings_without_data", 0),
    ]


def server_options(keepalive: Keepalive, min_client_keepalive_seconds: int) -> Options:
    return [
        *_pings(keepalive),
        ("grpc.keepalive_permit_without_calls", 1),
        # A client pinging more often than this is sent GOAWAY "too_many_pings": it must be at
        # most the shortest keepalive any agent is configured with.
        ("grpc.http2.min_ping_interval_without_data_ms", min_client_keepalive_seconds * 1000),
    ]


def _pings(keepalive: Keepalive) -> Options:
    timeout_ms = keepalive.timeout_seconds * 1000
    return [
        ("grpc.keepalive_time_ms", keepalive.seconds * 1000),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # Without the ping timeout an unanswered keepalive ping is not given up on before ~60 s
        # (DESIGN §6): the keepalive timeout alone does not bound the wait.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
    ]
