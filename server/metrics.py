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
RPCS_IN_FLIGHT = Gauge(
    "invsync_rpcs_in_flight",
    "Exchange calls being served now; gRPC sheds calls past server.max_concurrent_rpcs.",
    registry=REGISTRY,
)
MAX_CONCURRENT_RPCS = Gauge(
    "invsync_max_concurrent_rpcs",
    "The configured server.max_concurrent_rpcs: the bound RPCS_IN_FLIGHT is shed at.",
    registry=REGISTRY,
)
PUSH_STREAMS_OPEN = Gauge(
    "invsync_push_streams_open",
    "Push streams open now, by party (at most server.max_streams_per_party each).",
    ["party"],
    registry=REGISTRY,
)
INFLIGHT_BYTES = Gauge(
    "invsync_inflight_push_bytes",
    "Payload bytes held now by all push streams under way (at most server.max_inflight_bytes).",
    registry=REGISTRY,
)
MAX_INFLIGHT_BYTES = Gauge(
    "invsync_max_inflight_push_bytes",
    "The configured server.max_inflight_bytes: a push past it is refused as server-busy.",
    registry=REGISTRY,
)
CALLS_LIMITED = Counter(
    "invsync_calls_limited",
    "Calls refused or cancelled by a resource limit: `rule` too-many-streams, stream-too-slow "
    "or server-busy.",
    ["party", "rule"],
    registry=REGISTRY,
)

UNKNOWN = "unknown"
__all__ = ["ACCEPTED", "REJECTED", "UNKNOWN"]
