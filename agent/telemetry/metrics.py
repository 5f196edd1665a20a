"""The agent's Prometheus metrics, in a registry of its own; names in docs/metrics.md.

`serve` starts the HTTP endpoint when `[agent] metrics_listen` is set. The registry is not
prometheus_client's global one, so nothing else in the process (or in a test run) leaks into it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from invsync.agent.errors import ConfigError
from invsync.agent.model.findings import Finding
from invsync.agent.tomlconf import Table

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

SNAPSHOTS_PUSHED = Counter(
    "invsync_snapshots_pushed",
    "Snapshot pushes of a cycle by result; `reason` is the acceptance rule the server named.",
    ["pairing", "result", "reason"],
    registry=REGISTRY,
)
CLIENT_RPC_DURATION = Histogram(
    "invsync_client_rpc_duration_seconds",
    "Time each call to the exchange server took as the agent saw it, by method.",
    ["method"],
    registry=REGISTRY,
)
INPUTS_REFUSED = Counter(
    "invsync_agent_inputs_refused",
    "Answers of the exchange the agent refused and recorded as a finding, by pairing and rule.",
    ["pairing", "rule"],  # rule: a name of agent/exchange/rejections.py only, never free text
    registry=REGISTRY,
)

NOTIFICATIONS = Counter(
    "invsync_agent_notifications",
    "Notifications tried, by [[notify]] channel and outcome (sent or failed).",
    ["channel", "outcome"],  # channel: a configured name only
    registry=REGISTRY,
)
NOTIFICATIONS_PENDING = Gauge(
    "invsync_agent_notifications_pending",
    "Notifications waiting in the outbox for their channel, after the last flush.",
    ["channel"],
    registry=REGISTRY,
)

ACCEPTED = "accepted"
REJECTED = "rejected"
SENT = "sent"
FAILED = "failed"


class FindingsGauge:
    """Open findings of each pairing's latest report by code and severity, for either daemon.

    Open means not acknowledged, as `invsync status` counts them: an acknowledged finding stays
    in the report but needs no alert. A newer report replaces the pairing's counts: a code it no
    longer has open drops to 0 rather than keep the old count, so an alert on it clears.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = Gauge(
            "invsync_open_findings",
            "Open (unacknowledged) findings in the pairing's latest report, by code and severity.",
            ["pairing", "code", "severity"],
            registry=registry,
        )
        self._lock = threading.Lock()
        self._seen: dict[str, set[tuple[str, str]]] = {}

    def set(self, pairing: str, findings: Iterable[Finding]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for finding in findings:
            if finding.acknowledgement is not None:
                continue
            key = (finding.code, str(finding.severity))
            counts[key] = counts.get(key, 0) + 1
        with self._lock:
            for key in self._seen.get(pairing, set()) - counts.keys():
                self.gauge.labels(pairing, *key).set(0)
            for key, count in counts.items():
                self.gauge.labels(pairing, *key).set(count)
            self._seen[pairing] = self._seen.get(pairing, set()) | counts.keys()


OPEN_FINDINGS = FindingsGauge(REGISTRY)


def read_listen(table: Table) -> str:
    """`metrics_listen` of a daemon's table: "" (off) or HOST:PORT, checked at start-up."""
    value = table.text("metrics_listen", "")
    if value:
        try:
            parse_listen(value)
        except ValueError as e:
            raise table.fail("metrics_listen", str(e)) from e
    return value


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
