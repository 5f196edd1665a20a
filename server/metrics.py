"""The exchange server's Prometheus metrics, in a registry of its own; names in docs/metrics.md."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.findings import Finding

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
OPEN_FINDINGS = Gauge(
    "invsync_open_findings",
    "Findings in the pairing's latest report, by code and severity.",
    ["pairing", "code", "severity"],
    registry=REGISTRY,
)
RPC_DURATION = Histogram(
    "invsync_rpc_duration_seconds",
    "Time the Exchange service spent on each call, by method.",
    ["method"],
    registry=REGISTRY,
)

ACCEPTED = "accepted"
REJECTED = "rejected"
UNKNOWN = "unknown"

_findings_lock = threading.Lock()
_findings_seen: dict[str, set[tuple[str, str]]] = {}


def set_open_findings(pairing: str, findings: Iterable[Finding]) -> None:
    """Replace the pairing's counts: a code absent from the new report drops to 0."""
    counts: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (finding.code, str(finding.severity))
        counts[key] = counts.get(key, 0) + 1
    with _findings_lock:
        for key in _findings_seen.get(pairing, set()) - counts.keys():
            OPEN_FINDINGS.labels(pairing, *key).set(0)
        for key, count in counts.items():
            OPEN_FINDINGS.labels(pairing, *key).set(count)
        _findings_seen[pairing] = _findings_seen.get(pairing, set()) | counts.keys()
