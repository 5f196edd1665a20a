"""Findings over time: first_seen carried across successive bodies, resolved with what resolved
it, previous_report naming the body continued; all checked against the schema."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from invsync.agent.errors import ReportError
from invsync.agent.model.findings import DOPPELGANGER_UNTRACKED, MISSING_AT_SUBORDINATE, Finding
from invsync.agent.report.body import ReportBody, SnapshotRef, build_report_body, parse_report_body
from tests.report_helpers import AS_OF, DV_BUG, OV_BUG, demo_findings, signers
from tests.test_report_schema import VALIDATOR

DAY1, DAY2, DAY3 = AS_OF, AS_OF + timedelta(days=7), AS_OF + timedelta(days=14)


def _body(
    findings: tuple[Finding, ...],
    as_of: datetime,
    versions: tuple[int, int],
    previous: ReportBody | None,
) -> ReportBody:
    body = build_report_body(
        pairing="secom-jprs",
        as_of=as_of,
        root=SnapshotRef("secom", "root", versions[0], "ab" * 32),
        subordinate=SnapshotRef("jprs", "subordinate", versions[1], "cd" * 32),
        findings=findings,
        signers=signers(),
        previous=previous,
    )
    assert [e.message for e in VALIDATOR.iter_errors(json.loads(body))] == []
    return parse_report_body(body)


def _without(code: str, sha256: str) -> tuple[Finding, ...]:
    return tuple(f for f in demo_findings() if (f.code, f.sha256) != (code, sha256))


def _first_seen(body: ReportBody) -> dict[tuple[str, str], datetime | None]:
    return {(f.code, f.sha256): f.first_seen for f in body.findings}


def test_first_seen_is_carried_across_three_successive_bodies() -> None:
    first = _body(_without(MISSING_AT_SUBORDINATE, DV_BUG), DAY1, (1, 1), None)
    second = _body(demo_findings(), DAY2, (2, 1), first)
    third = _body(demo_findings(), DAY3, (2, 2), second)
    assert (first.previous_report, second.previous_report) == (None, first.report_id)
    assert third.previous_report == second.report_id
    seen = _first_seen(third)
    assert seen[(MISSING_AT_SUBORDINATE, OV_BUG)] == DAY1
    assert seen[(DOPPELGANGER_UNTRACKED, DV_BUG)] == DAY1
    assert seen[(MISSING_AT_SUBORDINATE, DV_BUG)] == DAY2  # appeared in the second report
    assert set(_first_seen(first).values()) == {DAY1}
    assert third.resolved == second.resolved == first.resolved == ()


def test_a_gap_starts_the_finding_over() -> None:
    first = _body(demo_findings(), DAY1, (1, 1), None)
    second = _body(_without(MISSING_AT_SUBORDINATE, OV_BUG), DAY2, (1, 2), first)
    third = _body(demo_findings(), DAY3, (1, 3), second)
    assert _first_seen(third)[(MISSING_AT_SUBORDINATE, OV_BUG)] == DAY3
    assert _first_seen(third)[(MISSING_AT_SUBORDINATE, DV_BUG)] == DAY1


def test_a_finding_gone_is_resolved_by_the_new_snapshot_versions() -> None:
    first = _body(demo_findings(), DAY1, (1, 1), None)
    second = _body(demo_findings(), DAY2, (1, 2), first)
    third = _body(_without(MISSING_AT_SUBORDINATE, OV_BUG), DAY3, (1, 3), second)
    (resolved,) = third.resolved
    assert (resolved.finding.code, resolved.finding.sha256) == (MISSING_AT_SUBORDINATE, OV_BUG)
    assert resolved.finding.first_seen == DAY1
    assert (resolved.resolved_at, resolved.root_version, resolved.subordinate_version) == (
        DAY3,
        1,
        3,
    )
    obj = json.loads(
        build_report_body(
            pairing="secom-jprs",
            as_of=DAY3,
            root=third.root,
            subordinate=third.subordinate,
            findings=third.findings,
            signers=third.signers,
            previous=second,
        )
    )
    (entry,) = obj["resolved"]
    assert entry["resolved_by"] == {"root_version": 1, "subordinate_version": 3}
    assert (entry["first_seen"], entry["resolved_at"]) == (
        "2021-01-01T00:00:00Z",
        "2021-01-15T00:00:00Z",
    )
    assert entry["code"] == MISSING_AT_SUBORDINATE and entry["sha256"] == OV_BUG
    # a later report does not repeat it: resolved lists only what the previous report had
    assert _body(third.findings, DAY3 + timedelta(days=1), (1, 3), third).resolved == ()


def test_the_body_is_a_pure_function_of_its_inputs_and_previous() -> None:
    first = _body(demo_findings(), DAY1, (1, 1), None)
    again = _body(demo_findings(), DAY1, (1, 1), None)
    assert first == again
    assert _body(demo_findings(), DAY2, (1, 2), first) == _body(
        demo_findings(), DAY2, (1, 2), again
    )


def test_a_previous_report_of_another_pairing_is_refused() -> None:
    first = _body(demo_findings(), DAY1, (1, 1), None)
    other = ReportBody(**{**first.__dict__, "pairing": "other"})
    with pytest.raises(ValueError, match=r"^previous must be a parsed report of the same pairing$"):
        _body(demo_findings(), DAY2, (1, 2), other)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"previous_report": "ABC"},
            "report body: field 'previous_report' must be null or a report id",
        ),
        ({"resolved": [{"code": "x"}]}, "report body: resolved[0]: expected an object with keys"),
    ],
)
def test_malformed_history_fields_are_refused(change: dict[str, object], message: str) -> None:
    obj = json.loads(
        build_report_body(
            pairing="secom-jprs",
            as_of=DAY1,
            root=SnapshotRef("secom", "root", 1, "ab" * 32),
            subordinate=SnapshotRef("jprs", "subordinate", 1, "cd" * 32),
            findings=demo_findings(),
            signers=signers(),
        )
    )
    obj.update(change)
    assert list(VALIDATOR.iter_errors(obj)) != []
    with pytest.raises(ReportError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        parse_report_body(json.dumps(obj).encode())


def test_a_finding_without_first_seen_is_refused() -> None:
    obj = json.loads(
        build_report_body(
            pairing="secom-jprs",
            as_of=DAY1,
            root=SnapshotRef("secom", "root", 1, "ab" * 32),
            subordinate=SnapshotRef("jprs", "subordinate", 1, "cd" * 32),
            findings=demo_findings(),
            signers=signers(),
        )
    )
    obj["findings"][0]["first_seen"] = None
    assert list(VALIDATOR.iter_errors(obj)) != []
    with pytest.raises(
        ReportError, match=r"^report body: findings\[0\]: field 'first_seen' is null$"
    ):
        parse_report_body(json.dumps(obj).encode())
