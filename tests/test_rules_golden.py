"""Golden cases: every rule on the real SECOM/JPRS certificates, expected findings as data.

Each tests/golden/*.json file is one pairing at one moment (see tests/golden_cases.py for the
format) with the complete set of (code, sha256) it must produce; a difference prints both what
was unexpected and what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from invsync.agent.model.findings import CATALOGUE, NOT_FROM_RULES, RULE_CRASHED, Finding
from invsync.agent.reconcile import runner as reconcile_module
from invsync.agent.reconcile.rules import RULES, Context
from invsync.agent.reconcile.runner import Rule, reconcile
from invsync.agent.times import rfc3339
from tests.golden_cases import GOLDEN, Case, load

CASE_FILES = sorted(GOLDEN.glob("*.json"))
CASES = {path.stem: load(path) for path in CASE_FILES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_case(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    if case.break_rule:
        monkeypatch.setattr(reconcile_module, "RULES", _broken(case.break_rule))
    findings = reconcile(case.root, case.sub, case.at)
    assert_finding_set(findings, {(e["code"], e["sha256"]) for e in case.expected}, case)
    for expected in case.expected:
        assert_details(findings, expected)


def assert_finding_set(
    findings: Iterable[Finding], expected: set[tuple[str, str]], case: Case
) -> None:
    got = {(f.code, f.sha256) for f in findings}
    assert got == expected, (
        f"{case.name}: {case.description}\n"
        f"unexpected: {sorted(got - expected)}\nmissing: {sorted(expected - got)}"
    )


def assert_details(findings: Iterable[Finding], expected: Mapping[str, str]) -> None:
    """Some finding with the expected code and sha256 has every other expected field."""
    candidates = [
        _fields(f) for f in findings if (f.code, f.sha256) == (expected["code"], expected["sha256"])
    ]
    wanted = {key: value for key, value in expected.items() if key != "note"}
    assert any(wanted.items() <= fields.items() for fields in candidates), (
        f"no finding has {wanted}; candidates: {candidates}"
    )


def _fields(finding: Finding) -> dict[str, str]:
    return {
        "code": finding.code,
        "sha256": finding.sha256,
        "severity": finding.severity.value,
        "party": finding.party,
        "policy": finding.policy,
        "due": "" if finding.due is None else rfc3339(finding.due),
    }


def _broken(code: str) -> tuple[Rule, ...]:
    def explode(ctx: Context) -> Iterable[Finding]:
        raise RuntimeError(f"golden case breaks {code}")

    assert code in {rule.code for rule in RULES}, f"no rule {code!r} to break"
    return tuple(Rule(r.code, explode) if r.code == code else r for r in RULES)


def test_every_case_file_is_collected() -> None:
    # A case saved under another extension, or a directory, would silently never run.
    in_directory = sorted(path.name for path in GOLDEN.iterdir())
    assert in_directory == [path.name for path in CASE_FILES]
    assert len(CASE_FILES) == len(CASES) >= 12


def test_every_catalogue_code_has_a_golden_case() -> None:
    # peer-rollback and log-inconsistent come from the agent (its trusted state and log watch:
    # tests/test_trusted.py and tests/test_log_watch.py pin them), never from reconciling two
    # snapshots; rule-crashed has its case (a broken rule).
    covered = {expected["code"] for case in CASES.values() for expected in case.expected}
    reconciled = set(CATALOGUE) - set(NOT_FROM_RULES) | {RULE_CRASHED}
    assert covered == reconciled, f"without a case: {sorted(reconciled - covered)}"
