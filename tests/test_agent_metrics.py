"""agent/telemetry/metrics.py's findings gauge and the rule a refused push is counted under."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from invsync.agent.errors import TransportError
from invsync.agent.exchange.client import Refused, Unreachable, rejection_rule
from invsync.agent.model.findings import AckMark, Finding, make_finding
from invsync.agent.telemetry.metrics import FindingsGauge

AT = datetime(2021, 3, 1, tzinfo=UTC)


def _finding(code: str, sha256: str) -> Finding:
    return make_finding(code, sha256=sha256, subject="CN=x", party="jprs", message="m")


def _values(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["pairing"], s.labels["code"], s.labels["severity"]): s.value
        for family in registry.collect()
        for s in family.samples
    }


def test_the_gauge_counts_open_findings_and_a_newer_report_replaces_them() -> None:
    registry = CollectorRegistry()
    gauge = FindingsGauge(registry)
    acked = replace(
        _finding("not-in-audit-scope", "C" * 64), acknowledgement=AckMark("jprs", "r", AT, AT)
    )
    gauge.set(
        "p",
        [
            _finding("missing-at-subordinate", "A" * 64),
            _finding("missing-at-subordinate", "B" * 64),
            acked,  # acknowledged: in the report, but not open
        ],
    )
    gauge.set("q", [_finding("unattributed", "D" * 64)])
    assert _values(registry) == {
        ("p", "missing-at-subordinate", "error"): 2,
        ("q", "unattributed", "warning"): 1,
    }
    gauge.set("p", [_finding("not-in-audit-scope", "C" * 64)])
    assert _values(registry) == {
        ("p", "missing-at-subordinate", "error"): 0,  # resolved: back to 0, not left at 2
        ("p", "not-in-audit-scope", "error"): 1,
        ("q", "unattributed", "warning"): 1,
    }


def _refused(rule: str) -> Refused:
    error = Refused("a:1: PushSnapshot: PERMISSION_DENIED: snapshot rejected: v1 <= 2")
    error.rule = rule  # as rpc_error sets it from the `invsync-rule` trailer
    return error


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        (_refused("rollback"), "rollback"),
        # A refusal whose server named no rule (an older or foreign server) still counts.
        (Refused("a:1: PushSnapshot: PERMISSION_DENIED: caller unknown"), "unknown"),
        # The server never answered: there is no verdict to count.
        (Unreachable("a:1", AT, 3, TransportError(": PushSnapshot: UNAVAILABLE: down")), None),
        (TransportError("a:1: PushSnapshot: INTERNAL: oops"), None),
    ],
)
def test_the_rule_a_refused_push_is_counted_under(error: TransportError, rule: str | None) -> None:
    # How the rule is read from the wire (trailing metadata, never the status text) is tested
    # in tests/test_rejections.py; this is the label the push metric takes from the error.
    assert rejection_rule(error) == rule
