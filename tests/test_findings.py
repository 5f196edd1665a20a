"""Findings: the catalogue, validation and the JSON form."""

from __future__ import annotations

import ast
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType

import pytest

from invsync.agent.daemon import log_reading
from invsync.agent.errors import ReportError
from invsync.agent.exchange import trusted
from invsync.agent.model import findings
from invsync.agent.model.findings import CATALOGUE, FINDING_FIELDS, Finding, Severity, make_finding
from invsync.agent.reconcile import rules
from invsync.agent.reconcile import runner as reconcile
from invsync.agent.reconcile.rules import status_public

SHA = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
OTHER = "04C1871C68608B3E5F9B0E62FE6A0D0A9F2E5E5F8A6E9E0B1C2D3E4F5A6B7C8D"


def _finding(**changes: object) -> Finding:
    fields: dict[str, object] = {
        "sha256": SHA,
        "subject": "CN=JPRS Organization Validation Authority - G3",
        "party": "jprs",
        "message": "secom issued it to jprs, which does not list it",
        "due": datetime(2020, 7, 17, 3, 4, 5, tzinfo=UTC),
        "related": (SHA.replace("2", "3"), OTHER),
    }
    fields.update(changes)
    return make_finding("missing-at-subordinate", **fields)  # type: ignore[arg-type]


def test_catalogue_codes_match_the_rules_and_the_constants() -> None:
    registered = [rule.code for rule in rules.RULES]
    declared = {
        value
        for name, value in vars(findings).items()
        if name.isupper() and isinstance(value, str) and value in CATALOGUE
    }
    # Every code but rule-crashed (the runner's own), peer-rollback (the agent's trusted
    # state's) and log-inconsistent (the agent's log watch's) has exactly one registered rule;
    # log-split-view has one, and the log watch makes it too.
    assert findings.NOT_FROM_RULES == ("peer-rollback", "log-inconsistent", "rule-crashed")
    assert sorted(registered) == sorted(set(CATALOGUE) - set(findings.NOT_FROM_RULES)), set(
        registered
    ) ^ set(CATALOGUE)
    assert declared == set(CATALOGUE)
    # The catalogue lists the codes in the order the rules run, then the exchange's own.
    assert [*registered, *findings.NOT_FROM_RULES] == list(CATALOGUE)


def test_each_rule_module_builds_only_the_codes_it_is_registered_for() -> None:
    built: dict[str, set[str]] = {}
    for rule in rules.RULES:
        module = sys.modules[rule.check.__module__]
        built.setdefault(rule.check.__module__, set()).update(_codes_built_in(module))
    registered: dict[str, set[str]] = {}
    for rule in rules.RULES:
        registered.setdefault(rule.check.__module__, set()).add(rule.code)
    # status-mismatch's public half lives in a helper module; count its codes with status's.
    built["invsync.agent.reconcile.rules.status"] |= _codes_built_in(status_public)
    assert built == registered
    assert _codes_built_in(reconcile) == {"rule-crashed"}
    assert _codes_built_in(trusted) == {"peer-rollback", "log-inconsistent"}
    assert _codes_built_in(log_reading) == {"log-inconsistent", "log-split-view"}


@pytest.mark.parametrize("code", ["peer-rollback", "log-inconsistent", "log-split-view"])
def test_the_agents_own_findings_are_errors_resting_on_the_exchange_history(code: str) -> None:
    info = CATALOGUE[code]
    assert (info.severity, info.policy) == (Severity.ERROR, "invsync exchange history (DESIGN 6a)")


def _codes_built_in(module: ModuleType) -> set[str]:
    # The code constants passed as the first argument of make_finding() in a module.
    tree = ast.parse(Path(str(module.__file__)).read_text())
    names = {
        call.args[0].id
        for call in ast.walk(tree)
        if isinstance(call, ast.Call)
        and getattr(call.func, "id", None) == "make_finding"
        and call.args
        and isinstance(call.args[0], ast.Name)
    }
    return {getattr(findings, name) for name in names}


def test_catalogue_entries_are_complete() -> None:
    for code, info in CATALOGUE.items():
        assert info.code == code
        assert info.description.endswith(".")
        assert isinstance(info.severity, Severity)


def test_make_finding_takes_policy_and_default_severity_from_the_catalogue() -> None:
    finding = _finding()
    assert finding.severity is Severity.ERROR
    assert finding.policy == "Mozilla Root Store Policy 5.3.2"
    assert _finding(severity=Severity.NOTICE).severity is Severity.NOTICE


def test_related_is_sorted() -> None:
    assert _finding(related=(SHA, OTHER)).related == (OTHER, SHA)


def test_to_json_has_the_fixed_keys_and_a_z_time() -> None:
    obj = _finding().to_json()
    assert tuple(obj) == FINDING_FIELDS
    assert obj["due"] == "2020-07-17T03:04:05Z"
    assert _finding(due=None).to_json()["due"] is None


def test_to_json_converts_other_offsets_to_utc() -> None:
    jst = timezone(timedelta(hours=9))
    obj = _finding(due=datetime(2020, 7, 17, 12, 0, tzinfo=jst)).to_json()
    assert obj["due"] == "2020-07-17T03:00:00Z"


def test_from_json_round_trips() -> None:
    finding = _finding()
    assert Finding.from_json(finding.to_json()) == finding


def test_from_json_names_the_bad_field() -> None:
    obj = _finding().to_json()
    with pytest.raises(ReportError, match=r"findings\[3\]: field 'party' must be a string"):
        Finding.from_json({**obj, "party": 7}, "findings[3]")
    with pytest.raises(ReportError, match=r"'yesterday' is not an RFC 3339 UTC time"):
        Finding.from_json({**obj, "due": "yesterday"})
    with pytest.raises(ReportError, match="'fatal' is not a valid Severity"):
        Finding.from_json({**obj, "severity": "fatal"})
    with pytest.raises(ReportError, match="expected an object with keys code, severity"):
        Finding.from_json({k: v for k, v in obj.items() if k != "policy"})


def test_bad_findings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown finding code 'nope'"):
        make_finding("nope", sha256=SHA, subject="", party="", message="")
    with pytest.raises(ValueError, match="not an uppercase hex SHA-256"):
        _finding(sha256=SHA.lower())
    with pytest.raises(ValueError, match=r"^due and first_seen must be timezone-aware$"):
        _finding(due=datetime(2020, 7, 17))


def test_severity_rank_orders_most_urgent_first() -> None:
    ranked = sorted(reversed(list(Severity)), key=lambda severity: severity.rank)
    assert ranked == [Severity.ERROR, Severity.WARNING, Severity.NOTICE]


def test_count_by_severity_lists_every_severity() -> None:
    counts = findings.count_by_severity([_finding(), _finding(severity=Severity.NOTICE)])
    assert counts == {"error": 1, "warning": 0, "notice": 1}
