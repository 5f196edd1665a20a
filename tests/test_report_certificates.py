"""The certificates a report lists (`certificates` in the body, `agent.report.certificates`).

Built from the real SECOM issuance log and JPRS list of the demo: the two certificates of Mozilla
bug 1695993 are listed with the issuer, serial and validity read from their DER by `cryptography`.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography import x509

from invsync.agent.errors import ReportError
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import ReportBody, canonical_json, parse_report_body
from invsync.agent.report.build import ReportSide, build_report
from tests.golden_cases import GOLDEN, load
from tests.report_helpers import (
    AS_OF,
    DV_BUG,
    JPRS_LIST,
    OV_BUG,
    SECOM_LOG,
    body_bytes,
    demo_findings,
    signers,
)


def _cert(sha: str) -> x509.Certificate:
    record = next(r for r in SECOM_LOG if r.sha256 == sha)
    return x509.load_der_x509_certificate(record.info.der)


def test_the_bug_certificates_are_listed_with_issuer_serial_and_validity() -> None:
    body = parse_report_body(body_bytes(demo_findings()))
    listed = {c.sha256: c for c in body.certificates}
    for sha in (OV_BUG, DV_BUG):
        cert = _cert(sha)
        assert listed[sha].issuer == cert.issuer.rfc4514_string()
        assert listed[sha].subject == cert.subject.rfc4514_string()
        assert int(listed[sha].serial, 16) == cert.serial_number
        assert listed[sha].not_before == cert.not_valid_before_utc
        assert listed[sha].not_after == cert.not_valid_after_utc


def test_every_named_certificate_is_listed_once_in_order() -> None:
    body = parse_report_body(body_bytes(demo_findings()))
    named = {sha for f in body.findings for sha in (f.sha256, *f.related) if sha}
    shas = [c.sha256 for c in body.certificates]
    assert shas == sorted(named)


def test_a_body_without_certificates_still_reads() -> None:
    obj = json.loads(body_bytes(demo_findings()))
    del obj["certificates"]
    assert parse_report_body(canonical_json(obj)).certificates == ()


def test_certificates_out_of_order_are_refused() -> None:
    obj = json.loads(body_bytes(demo_findings()))
    obj["certificates"].reverse()
    with pytest.raises(ReportError, match="'certificates' must be sorted by sha256, once each"):
        parse_report_body(canonical_json(obj))


def test_a_certificate_with_a_missing_field_names_its_index() -> None:
    obj = json.loads(body_bytes(demo_findings()))
    del obj["certificates"][1]["issuer"]
    with pytest.raises(ReportError, match=r"certificates\[1\]: expected an object with exactly"):
        parse_report_body(canonical_json(obj))


def test_a_bad_validity_time_is_refused() -> None:
    obj = json.loads(body_bytes(demo_findings()))
    obj["certificates"][0]["not_after"] = "tomorrow"
    with pytest.raises(ReportError, match=r"certificates\[0\]: field 'not_after'"):
        parse_report_body(canonical_json(obj))


def _snapshot(party: str, version: int, records: tuple[CertRecord, ...]) -> Snapshot:
    case = load(GOLDEN / "incident-2021-01-01.json")
    side = case.root if party == "secom" else case.sub
    assert side.header is not None
    header = replace(side.header, party=party, version=version)
    return Snapshot(header, records, f"{version:02x}" * 32)


def _build(root: ReportSide, sub: ReportSide, previous: ReportBody | None = None) -> ReportBody:
    body = build_report(
        pairing="secom-jprs",
        as_of=AS_OF,
        root=root,
        subordinate=sub,
        signers=signers(),
        previous=previous,
    )
    return parse_report_body(body)


def test_a_certificate_that_left_a_snapshot_is_listed_from_the_one_before() -> None:
    ov = next(r for r in SECOM_LOG if r.sha256 == OV_BUG)
    held = tuple(JPRS_LIST)
    root = ReportSide.of(_snapshot("secom", 1, held))
    sub = ReportSide.of(_snapshot("jprs", 2, held), _snapshot("jprs", 1, (*held, ov)))
    body = _build(root, sub)
    assert ("disappeared", OV_BUG) in {(f.code, f.sha256) for f in body.findings}
    assert {c.sha256: c.serial for c in body.certificates}[OV_BUG] == ov.info.serial_hex


def test_a_resolved_findings_certificate_is_listed_from_the_previous_report() -> None:
    ov = next(r for r in SECOM_LOG if r.sha256 == OV_BUG)
    held = tuple(JPRS_LIST)
    first = _build(
        ReportSide.of(_snapshot("secom", 1, (*held, ov))), ReportSide.of(_snapshot("jprs", 1, held))
    )
    assert ("missing-at-subordinate", OV_BUG) in {(f.code, f.sha256) for f in first.findings}
    second = _build(
        ReportSide.of(_snapshot("secom", 3, held)),
        ReportSide.of(_snapshot("jprs", 3, held)),
        previous=first,
    )
    assert OV_BUG in {r.finding.sha256 for r in second.resolved}
    assert OV_BUG in {c.sha256 for c in second.certificates}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sha256", "zz`|x", "field 'sha256' is not 64 uppercase hex digits"),
        ("serial", "22b9", "field 'serial' is not uppercase hex bytes"),
        ("serial", "ABC", "field 'serial' is not uppercase hex bytes"),
        ("not_after", "2001-01-01T00:00:00Z", "field 'not_after' is before 'not_before'"),
    ],
)
def test_a_listed_certificate_must_hold_what_the_schema_says(
    field: str, value: str, message: str
) -> None:
    obj = json.loads(body_bytes(demo_findings()))
    obj["certificates"][0][field] = value
    if field == "sha256":
        obj["certificates"].sort(key=lambda c: c["sha256"])
    with pytest.raises(ReportError, match=rf"certificates\[\d\]: {message}"):
        parse_report_body(canonical_json(obj))
