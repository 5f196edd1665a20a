"""`invsync rules`: the catalogue as text and JSON (agent/cli/rules.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from invsync.agent.cli.rules import rules_command
from invsync.agent.model.findings import CATALOGUE
from invsync.agent.reconcile.rules import RULES


def _run(*args: str) -> str:
    result = CliRunner().invoke(rules_command, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_text_lists_every_code_with_severity_policy_description_and_action() -> None:
    lines = _run().splitlines()
    assert len(lines) == 3 * len(CATALOGUE)
    for (head, description, action), info in zip(
        zip(lines[::3], lines[1::3], lines[2::3], strict=True), CATALOGUE.values(), strict=True
    ):
        assert head.split()[:2] == [info.code, info.severity.value]
        assert head.endswith(info.policy or "(no root program policy)")
        assert description.strip() == info.description
        assert action.strip() == f"What to do: {info.action}"


def test_every_code_says_what_to_do_in_one_sentence_or_two() -> None:
    for info in CATALOGUE.values():
        assert info.action.endswith("."), info.code
        assert 20 < len(info.action) <= 140, info.code


def test_text_names_the_incident_rules_policies() -> None:
    text = _run()
    assert "not-in-audit-scope         error    Mozilla Root Store Policy 3.1.3\n" in text
    assert "audit-overdue              error    CCADB Policy 5.2\n" in text


def test_json_is_the_catalogue_in_rule_order() -> None:
    listed = json.loads(_run("--format", "json"))
    expected = [rule.code for rule in RULES] + [
        "peer-rollback",
        "log-inconsistent",
        "rule-crashed",
    ]
    assert [entry["code"] for entry in listed] == expected
    assert listed == [
        {
            "code": info.code,
            "severity": info.severity.value,
            "policy": info.policy,
            "description": info.description,
            "action": info.action,
        }
        for info in CATALOGUE.values()
    ]


def test_the_trusted_states_code_is_listed_with_its_policy() -> None:
    text = _run()
    assert "peer-rollback              error    invsync exchange history (DESIGN 6a)\n" in text


def test_an_unknown_format_is_refused() -> None:
    result = CliRunner().invoke(rules_command, ["--format", "yaml"])
    assert result.exit_code == 2
    assert "Invalid value for '--format': 'yaml' is not one of 'text', 'json'." in result.output
