"""The exchange server's Prometheus metrics, in a registry of its own; names in docs/metrics.md."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from invsync.agent.telemetry.metrics import ACCEPTED, REJECTED, FindingsGauge

REGISTRY = CollectorRegistry(auto_describe=True)

SNAPSHOTS_RECEIVED = Counter(
    "invsync_snapshots_received",
    "Snapshot pushes by result; `reason` is the acceptance rule a rejected push broke.",
    ["party", "pairing", "result", "reason"],
    registry=REGISTRY,
)
LAST_ACCEPTED = Gauge(
    "invsync_last_accepted_snapshot_timestamp_seconds",
    "Unix time at which the server last accepted a snapshot of the party in the pairing.",
    ["party", "pairing"],
    registry=REGISTRY,
)
OPEN_FINDINGS = FindingsGauge(REGISTRY)
RPC_DURATION = Histogram(
    "invsync_rpc_duration_seconds",
    "Time the Exchange service spent on each call, by method.",
    ["method"],
    registry=REGISTRY,
)

UNKNOWN = "unknown"
__all__ = ["ACCEPTED", "REJECTED", "UNKNOWN"]
