"""The JSON Lines issuance log, built from the real SECOM/JPRS certificates."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.model.record import Revocation, SourceRef
from invsync.agent.sources.registry import load_source
from tests.certs import b64_der
from tests.paths import DEMO, SECOM_JPRS

FIXTURES = SECOM_JPRS / "individual"
DEMO_LOG = DEMO / "secom_issuance_log.jsonl"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
BUG_DV = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
BUG_OV_PEM = (FIXTURES / "JPRS_OV_G3_bug1695993_21C06633.pem").read_text()
BUG_DV_PEM = (FIXTURES / "JPRS_DV_G3_bug1695993_659B7A51.pem").read_text()
NOW = datetime(2021, 3, 1, tzinfo=UTC)
REVOKED = datetime(2021, 3, 9, tzinfo=UTC)


def _log(tmp_path: Path, *entries: dict[str, object] | str) -> Path:
    """A log file, one entry a line; a str entry is written as is (blank or broken lines)."""
    lines = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _fails(path: Path, message: str) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load_source(str(path), NOW)


def test_demo_log_holds_12_jprs_certificates() -> None:
    records = load_source(str(DEMO_LOG), NOW)
    assert len(records) == 12
    assert {r.operator for r in records} == {"jprs"}
    assert {BUG_OV, BUG_DV} <= {r.sha256 for r in records}


def test_pem_and_base64_der_entries_with_their_view(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        {"certificate": BUG_OV_PEM, "operator": "jprs", "lifecycle": "unused"},
        {"certificate": b64_der(BUG_DV_PEM), "operator": "jprs", "lifecycle": "in-use"},
    )
    by_sha = {r.sha256: r for r in load_source(str(path), NOW)}
    assert (by_sha[BUG_OV].operator, by_sha[BUG_OV].lifecycle) == ("jprs", "unused")
    assert (by_sha[BUG_DV].operator, by_sha[BUG_DV].lifecycle) == ("jprs", "in-use")
    assert by_sha[BUG_DV].sources == (SourceRef("issuance-log", f"{path}:2", NOW, NOW),)


def test_revocation_names_its_line(tmp_path: Path) -> None:
    entry = {"certificate": BUG_OV_PEM, "revoked_at": "2021-03-09T09:00:00+09:00"}
    path = _log(tmp_path, "", {**entry, "revocation_reason": "cessationOfOperation"})
    [record] = load_source(str(path), NOW)
    source = f"issuance-log:{path}:2"
    assert record.revocation == Revocation(REVOKED, "cessationOfOperation", source)
    assert record.revocation.revoked_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("keyCompromise", "keyCompromise"),
        ("key-compromise", "keyCompromise"),
        ("key_compromise", "keyCompromise"),
        ("cessation-of-operation", "cessationOfOperation"),
        ("ca-compromise", "cACompromise"),
        ("superseded", "superseded"),
    ],
)
def test_reason_spellings_are_normalized(tmp_path: Path, given: str, normalized: str) -> None:
    entry = {"certificate": BUG_OV_PEM, "revoked_at": "2021-03-09T00:00:00Z"}
    path = _log(tmp_path, {**entry, "revocation_reason": given})
    [record] = load_source(str(path), NOW)
    assert record.revocation is not None
    assert record.revocation.reason == normalized


def test_blank_lines_are_skipped_but_counted(tmp_path: Path) -> None:
    path = _log(tmp_path, "", "   ", {"certificate": BUG_OV_PEM})
    [record] = load_source(str(path), NOW)
    assert record.sources[0].location == f"{path}:3"


def test_kind_prefix_reads_a_log_with_another_name(tmp_path: Path) -> None:
    path = tmp_path / "export.txt"
    path.write_text(json.dumps({"certificate": BUG_OV_PEM}) + "\n")
    [record] = load_source(f"issuance-log:{path}", NOW)
    assert record.sha256 == BUG_OV


def test_same_certificate_on_two_lines_is_one_record(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        {"certificate": BUG_OV_PEM, "operator": "jprs"},
        {"certificate": b64_der(BUG_OV_PEM), "lifecycle": "unused"},
    )
    [record] = load_source(str(path), NOW)
    assert (record.operator, record.lifecycle) == ("jprs", "unused")
    assert [ref.location for ref in record.sources] == [f"{path}:1", f"{path}:2"]


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM}, "", '{"certificate": ')
    _fails(path, f"{path}:3: invalid JSON: Expecting value at column 17")


def test_a_json_array_is_not_an_entry(tmp_path: Path) -> None:
    _fails(
        _log(tmp_path, "[1, 2]"), f"{tmp_path / 'log.jsonl'}:1: expected a JSON object, got list"
    )


def test_missing_certificate(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM}, {"operator": "jprs"})
    _fails(path, f"{path}:2: missing required field 'certificate'")


def test_unknown_field_is_named(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "opertor": "jprs"})
    _fails(path, f"{path}:1: unknown field 'opertor' (known: certificate, operator, lifecycle,")


def test_duplicate_field_is_refused(tmp_path: Path) -> None:
    line = json.dumps({"certificate": BUG_OV_PEM})[:-1] + ', "operator": "a", "operator": "b"}'
    path = _log(tmp_path, line)
    _fails(path, f"{path}:1: field 'operator' appears twice")


def test_bad_lifecycle(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "lifecycle": "active"})
    _fails(path, f"{path}:1: lifecycle 'active' is not one of in-use, unused, decommissioned")


def test_operator_must_be_a_string(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "operator": 7})
    _fails(path, f"{path}:1: operator must be a string, got int")


def test_revoked_at_without_timezone(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "revoked_at": "2021-03-09T00:00:00"})
    _fails(path, f"{path}:1: revoked_at '2021-03-09T00:00:00' has no timezone")


@pytest.mark.parametrize("value", ["2021-03-09", "March 9, 2021", "20210309T000000Z"])
def test_revoked_at_not_rfc3339(tmp_path: Path, value: str) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "revoked_at": value})
    _fails(path, f"{path}:1: revoked_at {value!r} is not an RFC 3339 time")


def test_revoked_at_impossible_date(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "revoked_at": "2021-13-09T00:00:00Z"})
    _fails(path, f"{path}:1: revoked_at '2021-13-09T00:00:00Z' is not a valid time")


def test_unknown_reason(tmp_path: Path) -> None:
    entry = {"certificate": BUG_OV_PEM, "revoked_at": "2021-03-09T00:00:00Z"}
    path = _log(tmp_path, {**entry, "revocation_reason": "unused"})
    _fails(path, f"{path}:1: revocation_reason 'unused' is not an RFC 5280 reason (one of ")


def test_reason_without_time(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM, "revocation_reason": "superseded"})
    _fails(path, f"{path}:1: revocation_reason given without revoked_at")


def test_base64_der_that_is_not_a_certificate(tmp_path: Path) -> None:
    not_a_cert = base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    path = _log(tmp_path, {"certificate": BUG_OV_PEM}, {"certificate": not_a_cert})
    _fails(path, f"{path}:2: certificate cannot be parsed: ")


def test_certificate_that_is_not_base64(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": "not base64!"})
    _fails(path, f"{path}:1: certificate is neither PEM nor base64 DER (")


def test_pem_with_two_certificates_in_one_entry(tmp_path: Path) -> None:
    path = _log(tmp_path, {"certificate": BUG_OV_PEM + BUG_DV_PEM})
    _fails(path, f"{path}:1: certificate holds 2 PEM certificates, not 1")


def test_truncated_pem_in_an_entry(tmp_path: Path) -> None:
    lines = BUG_OV_PEM.splitlines()
    del lines[5:15]
    path = _log(tmp_path, {"certificate": "\n".join(lines)})
    _fails(path, f"{path}:1: certificate 1 cannot be parsed: ")


def test_log_without_entries(tmp_path: Path) -> None:
    path = _log(tmp_path, "", "")
    _fails(path, f"{path}: no certificate found")


def test_missing_log(tmp_path: Path) -> None:
    _fails(tmp_path / "gone.jsonl", f"{tmp_path / 'gone.jsonl'}: cannot read: No such file")
