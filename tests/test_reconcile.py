"""Reconciliation on the real SECOM/JPRS certificates (Mozilla bug 1695993).

The demo data replays early 2021: SECOM's issuance log lists the 12 CA certificates its roots
issued to JPRS up to 2020-07-22; JPRS lists 10, without the two 2020-07-10 certificates with
9-byte serials that were reissued the same day and never used.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.errors import ReportError
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.record import CertRecord, Revocation, parse_certificate
from invsync.agent.model.snapshot import ROOT, Side, SnapshotHeader
from invsync.agent.reconcile import runner as reconcile_module
from invsync.agent.reconcile.rules import missing
from invsync.agent.reconcile.runner import Context, Rule, reconcile
from tests.paths import DEMO

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
DV_BUG = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
NEW_YEAR_2021 = datetime(2021, 1, 1, tzinfo=UTC)
REVOKED_2021_03_09 = datetime(2021, 3, 9, tzinfo=UTC)
AFTER_REVOCATION = datetime(2021, 3, 10, tzinfo=UTC)


def _log_records(path: Path) -> list[CertRecord]:
    records = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
        info = parse_certificate(cert.public_bytes(Encoding.DER))
        records.append(CertRecord(info, operator=entry["operator"]))
    return records


def _pem_records(path: Path) -> list[CertRecord]:
    certs = x509.load_pem_x509_certificates(path.read_bytes())
    return [CertRecord(parse_certificate(c.public_bytes(Encoding.DER))) for c in certs]


SECOM_LOG = _log_records(DEMO / "secom_issuance_log.jsonl")
JPRS_LIST = _pem_records(DEMO / "jprs_ca_certificates.pem")


def _record(sha: str) -> CertRecord:
    (match,) = [r for r in SECOM_LOG if r.sha256 == sha]
    return match


def _sha(prefix: str) -> str:
    (match,) = [r.sha256 for r in SECOM_LOG if r.sha256.startswith(prefix)]
    return match


OV_G3 = {OV_BUG, _sha("90EE548E"), _sha("04C1871C")}  # 2019, bug, same-day reissue
DV_G3 = {DV_BUG, _sha("11A27671"), _sha("927E9BFC")}


def _revoked(
    records: Iterable[CertRecord], shas: set[str], at: datetime, reason: str = "superseded"
) -> list[CertRecord]:
    revocation = Revocation(at, reason, "test:revocation")
    return [r.with_view(revocation=revocation) if r.sha256 in shas else r for r in records]


def _run(root: Sequence[CertRecord], sub: Sequence[CertRecord], at: datetime) -> list[Finding]:
    return list(reconcile(Side("secom", root), Side("jprs", sub), at))


def assert_finding_set(actual: Iterable[Finding], expected: set[tuple[str, str]]) -> None:
    """Compare (code, sha256) sets, printing both differences on failure."""
    got = {(f.code, f.sha256) for f in actual}
    assert got == expected, (
        f"unexpected: {sorted(got - expected)}\nmissing: {sorted(expected - got)}"
    )


def _of(findings: Iterable[Finding], code: str) -> list[Finding]:
    return [f for f in findings if f.code == code]


def test_demo_data_is_the_incident() -> None:
    assert len(SECOM_LOG) == 12
    assert len(JPRS_LIST) == 10
    assert {r.sha256 for r in SECOM_LOG} - {r.sha256 for r in JPRS_LIST} == {OV_BUG, DV_BUG}


def test_the_incident_as_of_2021() -> None:
    findings = _run(SECOM_LOG, JPRS_LIST, NEW_YEAR_2021)
    assert_finding_set(
        findings,
        {
            ("missing-at-subordinate", OV_BUG),
            ("missing-at-subordinate", DV_BUG),
            ("doppelganger-untracked", OV_BUG),
            ("doppelganger-untracked", DV_BUG),
        },
    )
    missing = _of(findings, "missing-at-subordinate")
    assert {f.severity for f in missing} == {Severity.ERROR}
    assert {f.party for f in missing} == {"jprs"}


def test_missing_at_subordinate_says_who_issued_what_to_whom() -> None:
    findings = _of(_run(SECOM_LOG, JPRS_LIST, NEW_YEAR_2021), "missing-at-subordinate")
    (ov,) = [f for f in findings if f.sha256 == OV_BUG]
    # Who issued it to whom; the subject, serial and SHA-256 are columns beside the message.
    assert ov.message == "secom issued it to jprs, which does not list it"
    assert ov.policy == "Mozilla Root Store Policy 5.3.2"
    # The disclosure clock starts at issuance (notBefore 2020-07-10).
    assert ov.due == _record(OV_BUG).info.not_before + timedelta(days=7)
    assert ov.due is not None and ov.due.date().isoformat() == "2020-07-17"


def test_incident_doppelgangers_name_the_tracked_members() -> None:
    findings = _of(_run(SECOM_LOG, JPRS_LIST, NEW_YEAR_2021), "doppelganger-untracked")
    by_sha = {f.sha256: f for f in findings}
    assert set(by_sha[OV_BUG].related) == OV_G3 - {OV_BUG}
    assert set(by_sha[DV_BUG].related) == DV_G3 - {DV_BUG}
    assert {f.severity for f in findings} == {Severity.WARNING}
    assert {f.party for f in findings} == {"jprs"}
    assert "shares subject and key with" in by_sha[OV_BUG].message
    assert "only secom lists it" in by_sha[OV_BUG].message


def test_revoked_at_the_root_only_is_still_missing_but_a_warning() -> None:
    root = _revoked(SECOM_LOG, {OV_BUG, DV_BUG}, REVOKED_2021_03_09)
    findings = _run(root, JPRS_LIST, AFTER_REVOCATION)
    assert_finding_set(
        findings,
        {
            ("missing-at-subordinate", OV_BUG),
            ("missing-at-subordinate", DV_BUG),
            ("doppelganger-untracked", OV_BUG),
            ("doppelganger-untracked", DV_BUG),
        },
    )
    assert {f.severity for f in _of(findings, "missing-at-subordinate")} == {Severity.WARNING}
    assert {f.severity for f in _of(findings, "doppelganger-untracked")} == {Severity.NOTICE}
    assert "(revoked 2021-03-09 (superseded))" in findings[-1].message


def test_revoked_at_both_sides_is_reconciled() -> None:
    root = _revoked(SECOM_LOG, {OV_BUG, DV_BUG}, REVOKED_2021_03_09)
    sub = JPRS_LIST + [r for r in root if r.sha256 in {OV_BUG, DV_BUG}]
    assert_finding_set(_run(root, sub, AFTER_REVOCATION), set())


def test_a_revocation_after_the_clock_does_not_count_yet() -> None:
    root = _revoked(SECOM_LOG, {OV_BUG, DV_BUG}, REVOKED_2021_03_09)
    findings = _run(root, JPRS_LIST, NEW_YEAR_2021)
    assert {f.severity for f in _of(findings, "missing-at-subordinate")} == {Severity.ERROR}


def test_expired_and_missing_is_a_notice() -> None:
    g1 = {r.sha256 for r in SECOM_LOG if r.info.subject.startswith("CN=JPRS Organization")}
    sub = [r for r in JPRS_LIST if r.sha256 not in g1]
    findings = _run(SECOM_LOG, sub, datetime(2026, 5, 1, tzinfo=UTC))
    expired = [f for f in _of(findings, "missing-at-subordinate") if "- G1" in f.subject]
    assert len(expired) == 1
    assert expired[0].severity is Severity.NOTICE
    assert "(expired 2026-04-06)" in expired[0].message


def test_missing_at_root() -> None:
    g4 = _sha("801C522D")
    root = [r for r in SECOM_LOG if r.sha256 != g4]
    findings = _run(root, JPRS_LIST, NEW_YEAR_2021)
    assert_finding_set(
        _of(findings, "missing-at-root") + _of(findings, "missing-at-subordinate"),
        {
            ("missing-at-root", g4),
            ("missing-at-subordinate", OV_BUG),
            ("missing-at-subordinate", DV_BUG),
        },
    )
    (finding,) = _of(findings, "missing-at-root")
    assert (finding.severity, finding.party) == (Severity.ERROR, "secom")
    assert finding.message.startswith("jprs lists it, signed by a key of secom, which does not")


def _both_list_all() -> list[CertRecord]:
    """Both sides list all 12 (the state after JPRS added the two to its inventory)."""
    return list(SECOM_LOG)


def test_status_mismatch_revoked_at_the_root_only() -> None:
    g2 = _sha("DB2F0194")
    root = _revoked(_both_list_all(), {g2}, datetime(2021, 2, 1, tzinfo=UTC), "superseded")
    (finding,) = _run(root, _both_list_all(), AFTER_REVOCATION)
    assert (finding.code, finding.sha256) == ("status-mismatch", g2)
    assert (finding.severity, finding.party) == (Severity.ERROR, "jprs")
    assert finding.policy == "TLS BR 4.9.1.2"
    assert finding.due == datetime(2021, 2, 8, tzinfo=UTC)
    assert "secom lists" in finding.message and "jprs lists it as not revoked" in finding.message


def test_status_mismatch_revoked_at_the_subordinate_only() -> None:
    g2 = _sha("DB2F0194")
    sub = _revoked(_both_list_all(), {g2}, datetime(2021, 2, 1, tzinfo=UTC))
    (finding,) = _run(_both_list_all(), sub, AFTER_REVOCATION)
    assert (finding.code, finding.severity, finding.party) == (
        "status-mismatch",
        Severity.ERROR,
        "secom",
    )


@pytest.mark.parametrize(
    ("sub_day", "sub_reason", "expected"),
    [
        (4, "superseded", True),  # three days apart
        (2, "superseded", False),  # a day apart: sources round times
        (1, "keyCompromise", True),  # same day, other reason
    ],
)
def test_status_mismatch_when_both_revoked_differently(
    sub_day: int, sub_reason: str, expected: bool
) -> None:
    g2 = _sha("DB2F0194")
    root = _revoked(_both_list_all(), {g2}, datetime(2021, 2, 1, tzinfo=UTC), "superseded")
    sub = _revoked(_both_list_all(), {g2}, datetime(2021, 2, sub_day, tzinfo=UTC), sub_reason)
    findings = _run(root, sub, AFTER_REVOCATION)
    assert_finding_set(findings, {("status-mismatch", g2)} if expected else set())
    for finding in findings:
        assert (finding.severity, finding.party, finding.due) == (Severity.WARNING, "secom", None)


def test_doppelgangers_of_a_key_compromise_must_all_be_revoked() -> None:
    # Revoking one member for keyCompromise leaves the key usable through the others.
    root = _revoked(_both_list_all(), {OV_BUG}, REVOKED_2021_03_09, "keyCompromise")
    sub = _revoked(_both_list_all(), {OV_BUG}, REVOKED_2021_03_09, "keyCompromise")
    findings = _run(root, sub, AFTER_REVOCATION)
    assert_finding_set(findings, {("doppelganger-untracked", sha) for sha in OV_G3 - {OV_BUG}})
    assert all("neither secom nor jprs lists it as revoked" in f.message for f in findings)


def test_a_superseded_doppelganger_is_the_normal_reissue() -> None:
    root = _revoked(_both_list_all(), {OV_BUG}, REVOKED_2021_03_09, "superseded")
    sub = _revoked(_both_list_all(), {OV_BUG}, REVOKED_2021_03_09, "superseded")
    assert_finding_set(_run(root, sub, AFTER_REVOCATION), set())


def test_a_crashing_rule_becomes_a_finding_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exploding_rule(ctx: Context) -> Iterable[Finding]:
        yield from missing.check_root(ctx)
        raise KeyError("no such column")

    # doppelganger-untracked's check replaced by one that yields, then raises.
    rules = tuple(
        Rule(rule.code, exploding_rule) if rule.code == "doppelganger-untracked" else rule
        for rule in reconcile_module.RULES
    )
    monkeypatch.setattr(reconcile_module, "RULES", rules)
    findings = _run(SECOM_LOG, JPRS_LIST, NEW_YEAR_2021)
    assert_finding_set(
        findings,
        {
            ("missing-at-subordinate", OV_BUG),
            ("missing-at-subordinate", DV_BUG),
            ("rule-crashed", ""),
        },
    )
    (crash,) = _of(findings, "rule-crashed")
    assert crash.severity is Severity.ERROR
    assert crash.message == (
        "rule doppelganger-untracked crashed with KeyError: 'no such column'; "
        "its findings are missing from this run"
    )


def test_a_crashing_rule_is_logged_with_its_traceback_rule_and_pairing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def exploding_rule(ctx: Context) -> Iterable[Finding]:
        raise KeyError("no such column")

    rules = tuple(
        Rule(rule.code, exploding_rule) if rule.code == "unused-not-revoked" else rule
        for rule in reconcile_module.RULES
    )
    monkeypatch.setattr(reconcile_module, "RULES", rules)
    header = SnapshotHeader(
        party="secom",
        pairing="secom-jprs",
        role=ROOT,
        version=1,
        issued_at=NEW_YEAR_2021,
        expires_at=NEW_YEAR_2021 + timedelta(days=1),
        previous_digest=b"",
        record_count=0,
        records_digest=b"",
        scope_issuer_spki=(),
    )
    with caplog.at_level(logging.ERROR, logger="invsync.agent.reconcile.runner"):
        reconcile(Side("secom", [], header=header), Side("jprs", []), NEW_YEAR_2021)
    (logged,) = caplog.records
    assert logged.getMessage() == "rule unused-not-revoked crashed"
    fields = vars(logged)  # `extra=` fields are plain attributes of the record
    assert (fields["rule"], fields["pairing"]) == ("unused-not-revoked", "secom-jprs")
    assert logged.exc_info is not None and "KeyError: 'no such column'" in caplog.text
    assert "in exploding_rule" in caplog.text  # the traceback itself, not only the message


def test_findings_are_sorted_and_independent_of_input_order() -> None:
    expected = _run(SECOM_LOG, JPRS_LIST, NEW_YEAR_2021)
    assert [(f.code, f.sha256) for f in expected] == sorted((f.code, f.sha256) for f in expected)
    shuffler = random.Random(1695993)
    for _ in range(5):
        root, sub = SECOM_LOG[:], JPRS_LIST[:]
        shuffler.shuffle(root)
        shuffler.shuffle(sub)
        assert _run(root, sub, NEW_YEAR_2021) == expected


def test_a_side_listing_a_certificate_twice_is_refused() -> None:
    twice = [*JPRS_LIST, _record(OV_BUG), _record(OV_BUG)]
    with pytest.raises(ReportError, match=f"jprs lists certificate {OV_BUG} more than once"):
        _run(SECOM_LOG, twice, NEW_YEAR_2021)
