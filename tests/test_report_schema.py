"""docs/report.schema.json describes exactly what `build_report_body` writes, and no more."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from invsync.agent.model.findings import CATALOGUE, FINDING_FIELDS, Severity
from invsync.agent.reconcile.rules.stale_peer import never_sent
from invsync.agent.report.body import SIGNER_ROLES, parse_report_body
from tests.paths import ROOT
from tests.report_helpers import (
    AS_OF,
    OV_BUG,
    body_bytes,
    demo_findings,
    hostile_findings,
    hostile_record,
)

SCHEMA_PATH = ROOT / "docs" / "report.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
LATER = datetime(2021, 3, 10, tzinfo=UTC)


def _errors(obj: object) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(obj)]


def _demo() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(body_bytes(demo_findings()))
    return body


def test_the_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("at", [AS_OF, LATER], ids=["2021-01-01", "2021-03-10"])
def test_real_demo_bodies_validate(at: datetime) -> None:
    body = body_bytes(demo_findings(at), at)
    assert _errors(json.loads(body)) == []
    parse_report_body(body)  # and the code accepts what the schema accepts


def test_a_body_with_hostile_subject_and_no_findings_validate() -> None:
    assert _errors(json.loads(body_bytes(hostile_findings([hostile_record()])))) == []
    assert _errors(json.loads(body_bytes([]))) == []


def test_the_demo_body_has_every_kind_of_value_the_schema_allows() -> None:
    # A schema test on a body without due dates or related certificates would prove little.
    findings = _demo()["findings"]
    assert any(f["due"] is None for f in findings)
    assert any(f["due"] is not None for f in findings)
    assert any(f["related"] for f in findings)


@pytest.mark.parametrize("field", sorted(SCHEMA["required"]))
def test_a_missing_top_level_field_fails(field: str) -> None:
    body = _demo()
    del body[field]
    assert _errors(body) == [f"'{field}' is a required property"]


@pytest.mark.parametrize("field", FINDING_FIELDS)
def test_a_missing_finding_field_fails(field: str) -> None:
    body = _demo()
    del body["findings"][0][field]
    assert _errors(body) == [f"'{field}' is a required property"]


@pytest.mark.parametrize("where", ["top", "finding", "root", "summary", "signer"])
def test_an_extra_field_fails(where: str) -> None:
    body = _demo()
    target = {
        "top": body,
        "finding": body["findings"][0],
        "root": body["root"],
        "summary": body["summary"],
        "signer": body["signers"][0],
    }[where]
    target["last_seen"] = "2021-01-01T00:00:00Z"
    (error,) = _errors(body)
    assert "Additional properties are not allowed ('last_seen' was unexpected)" in error


@pytest.mark.parametrize(
    "bad",
    [
        OV_BUG.lower(),  # certificate fingerprints are uppercase
        OV_BUG[:-1],
        OV_BUG + "0",
        "G" * 64,
        "SHA256:" + OV_BUG,
    ],
)
def test_a_bad_certificate_sha256_fails(bad: str) -> None:
    body = _demo()
    body["findings"][0]["sha256"] = bad
    assert _errors(body) != []
    body = _demo()
    body["findings"][0]["related"] = [bad]
    assert _errors(body) != []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("root", "digest"), "AB" * 32),  # own digests are lowercase
        (("root", "role"), "subordinate"),
        (("subordinate", "version"), 0),
        (("schema",), "invsync.report.v2"),
        (("as_of",), "2021-01-01T00:00:00+00:00"),
        (("summary", "error"), -1),
        (("findings", 0, "severity"), "critical"),
        (("findings", 0, "due"), "2020-07-17"),
        (("findings", 0, "code"), "Missing At Subordinate"),
        (("signers", 0, "role"), "auditor"),
        (("signers", 0, "public_key"), "not base64!"),
    ],
)
def test_a_malformed_value_fails(path: tuple[str | int, ...], value: object) -> None:
    body = _demo()
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert _errors(body) != []


def test_empty_sha256_is_allowed_for_a_finding_about_no_certificate() -> None:
    body = _demo()
    body["findings"][0]["sha256"] = ""
    assert _errors(body) == []


def test_finding_properties_are_the_code_s_finding_fields() -> None:
    finding = SCHEMA["$defs"]["finding"]
    assert list(finding["properties"]) == list(FINDING_FIELDS)
    assert finding["required"] == list(FINDING_FIELDS)
    assert finding["additionalProperties"] is False


def test_enumerations_are_the_code_s() -> None:
    defs = SCHEMA["$defs"]
    assert defs["finding"]["properties"]["severity"]["enum"] == [s.value for s in Severity]
    assert defs["signer"]["properties"]["role"]["enum"] == list(SIGNER_ROLES)
    assert SCHEMA["properties"]["summary"]["required"] == [s.value for s in Severity]
    code = defs["finding"]["properties"]["code"]
    for name in CATALOGUE:
        assert VALIDATOR.evolve(schema=code).is_valid(name), name


def test_a_body_on_a_party_that_sent_nothing_validates_and_its_digest_must_be_empty() -> None:
    body = json.loads(body_bytes([never_sent("jprs", "secom-jprs")]))
    body["subordinate"] = {"party": "jprs", "role": "subordinate", "version": 0, "digest": ""}
    assert _errors(body) == []
    body["subordinate"]["digest"] = "ab" * 32  # version 0 names no snapshot
    assert _errors(body) != []
