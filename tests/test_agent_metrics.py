"""agent/telemetry/metrics.py's findings gauge and the rule a refused push is counted under."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from invsync.agent.daemon.refusals import recording_refusals, start_refusal_counts
from invsync.agent.errors import TransportError
from invsync.agent.exchange.client import Refused, Unreachable, rejection_rule
from invsync.agent.exchange.rejections import (
    REFUSAL_RULES,
    LogSplitViewError,
    PeerRollbackError,
    ReceiptMismatchError,
    UntrustedInput,
)
from invsync.agent.model.findings import AckMark, Finding, make_finding
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.telemetry.metrics import REGISTRY, FindingsGauge

AT = datetime(2021, 3, 1, tzinfo=UTC)
FINDING = make_finding("peer-rollback", sha256="", subject="", party="jprs", message="m")


class _Foreign(UntrustedInput):
    rule = "free text a newer server might name"


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


def _refused_count(pairing: str, rule: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "invsync_agent_inputs_refused_total", {"pairing": pairing, "rule": rule}
        )
        or 0.0
    )


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        (PeerRollbackError("older peer snapshot", FINDING), "peer-rollback"),
        (LogSplitViewError("another log", FINDING), "log-split-view"),
        # A rule this agent does not know (free text) never becomes a label value.
        (_Foreign("what the server said", FINDING), "unknown"),
    ],
)
def test_a_recorded_refusal_increments_the_refused_inputs_counter(
    tmp_path: Path, error: UntrustedInput, rule: str
) -> None:
    store = AgentStore(tmp_path / "agent.db")
    before = _refused_count("p-refused", rule)
    with pytest.raises(UntrustedInput), recording_refusals(store, "jprs", "p-refused", lambda: AT):
        raise error
    assert [r.rule for r in store.refusals("p-refused")] == [error.rule]
    assert _refused_count("p-refused", rule) == before + 1
    assert _refused_count("p-refused", error.rule) == (before + 1 if rule == error.rule else 0)
    store.close()


def test_a_refusal_without_a_finding_is_neither_recorded_nor_counted(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "agent.db")
    before = _refused_count("p-unrecorded", "receipt-mismatch")
    with (
        pytest.raises(ReceiptMismatchError),
        recording_refusals(store, "jprs", "p-unrecorded", lambda: AT),
    ):
        raise ReceiptMismatchError("another snapshot's receipt")
    assert store.refusals("p-unrecorded") == []
    assert _refused_count("p-unrecorded", "receipt-mismatch") == before
    store.close()


def test_every_refusal_rule_starts_at_zero_for_each_pairing() -> None:
    start_refusal_counts(["p-started"])
    assert {rule: _refused_count("p-started", rule) for rule in REFUSAL_RULES} == dict.fromkeys(
        REFUSAL_RULES, 0.0
    )
    assert (
        REGISTRY.get_sample_value(
            "invsync_agent_inputs_refused_total", {"pairing": "p-started", "rule": REFUSAL_RULES[0]}
        )
        == 0.0
    )
    assert {"peer-rollback", "log-inconsistent", "log-split-view"} <= set(REFUSAL_RULES)
