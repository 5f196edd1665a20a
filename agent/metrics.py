"""The agent's Prometheus metrics, in a registry of its own; names in docs/metrics.md.

`serve` starts the HTTP endpoint when `[agent] metrics_listen` is set. The registry is not
prometheus_client's global one, so nothing else in the process (or in a test run) leaks into it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server

from agent.errors import ConfigError

REGISTRY = CollectorRegistry(auto_describe=True)

COLLECTION_DURATION = Histogram(
    "invsync_collection_duration_seconds",
    "Time to read every inventory source and store the inventory.",
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900),
    registry=REGISTRY,
)
INVENTORY_RECORDS = Gauge(
    "invsync_inventory_records",
    "Certificates in the inventory after the last collection.",
    registry=REGISTRY,
)
LAST_EXCHANGE = Gauge(
    "invsync_last_successful_exchange_timestamp_seconds",
    "Unix time of the last snapshot push whose signed receipt verified, per pairing.",
    ["pairing"],
    registry=REGISTRY,
)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port); raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:9464, got {value!r}")
    return host.strip("[]"), int(port)


def serve(listen: str, key_path: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve `registry` on `listen` (`host:port`) in a daemon thread; "" serves nothing.

    `key_path` (`FILE: agent.metrics_listen`) starts the error when the address cannot be bound,
    e.g. a port another process holds: the daemon stops at start rather than run unobserved.
    """
    if not listen:
        return
    host, port = parse_listen(listen)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise ConfigError(f"{key_path}: cannot listen on {listen}: {e.strerror}") from e
