"""Rule edge cases the golden cases do not show, and the exact wording of messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from invsync.agent.errors import ReportError
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, CcadbAudit, Disclosure
from invsync.agent.model.findings import Finding
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side, Snapshot
from invsync.agent.reconcile.rules import profile, stale_peer
from invsync.agent.reconcile.rules.audit_overdue import next_report_due
from invsync.agent.reconcile.rules.context import Context
from invsync.agent.reconcile.runner import reconcile
from tests.golden_cases import GOLDEN, certificates, load

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
OV_G4 = "801C522D3AD138E4F05D467EA369C1CC276078BF284018D0525EBBBC5342C836"
DV_G4 = "F19D55CD08A3EA42BD91508073823174DD92370213C177F82531756DA7508A51"
AT = datetime(2021, 1, 1, tzinfo=UTC)


def _record(sha: str, **view: object) -> CertRecord:
    return CertRecord(certificates()[sha], operator="jprs").with_view(**view)


def _codes(findings: tuple[Finding, ...]) -> set[tuple[str, str]]:
    return {(f.code, f.sha256) for f in findings}


def test_side_of_a_snapshot_carries_its_header_and_the_previous_records() -> None:
    case = load(GOLDEN / "incident-2021-01-01.json")
    assert case.sub.header is not None
    current = Snapshot(case.sub.header, tuple(case.sub.records), "ab" * 32)
    previous = Snapshot(case.sub.header, (_record(OV_BUG),), "cd" * 32)
    side = Side.of(current, previous, max_age=timedelta(days=2))
    assert (side.party, side.header, side.max_age) == ("jprs", case.sub.header, timedelta(days=2))
    assert side.previous == (_record(OV_BUG),)
    assert Side.of(current).previous is None


def test_a_side_listing_a_certificate_twice_is_refused() -> None:
    with pytest.raises(ReportError, match=f"^jprs lists certificate {OV_G4} more than once$"):
        Context.of(Side("secom", ()), Side("jprs", (_record(OV_G4), _record(OV_G4))), AT)


def test_a_revocation_scheduled_after_the_clock_leaves_the_certificate_live() -> None:
    later = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "cessationOfOperation", "log")
    record = _record(OV_BUG, lifecycle="unused", revocation=later)
    findings = reconcile(Side("secom", (record,)), Side("jprs", (record,)), AT)
    assert _codes(findings) == {("unused-not-revoked", OV_BUG)}
    (finding,) = findings
    # The subject, serial and SHA-256 are columns beside the message, not in it.
    assert finding.message == (
        "valid until 2029-05-29 and not revoked, but "
        "jprs marks it unused and secom marks it unused; jprs must have it revoked "
        "(secom can revoke it too)"
    )


def test_a_later_audit_of_the_same_kind_supersedes_the_earlier() -> None:
    old = AuditPeriod("WebTrust BR", date(2019, 10, 30), date(2020, 10, 29))
    new = AuditPeriod("WebTrust BR", date(2020, 10, 30), date(2021, 10, 29))
    # The 2020 list left DV G4 out; the 2021 list names both.
    ov = _record(OV_G4, audit_scope=(_entry(OV_G4, old), _entry(OV_G4, new)))
    dv = _record(DV_G4, audit_scope=(_entry(DV_G4, new),))
    at = datetime(2022, 1, 1, tzinfo=UTC)
    assert reconcile(Side("secom", (ov, dv)), Side("jprs", (ov, dv)), at) == ()
    dv_2020_only = _record(DV_G4)
    findings = reconcile(Side("secom", (ov, dv_2020_only)), Side("jprs", (ov,)), at)
    assert ("not-in-audit-scope", DV_G4) in _codes(findings)
    (scope,) = [f for f in findings if f.code == "not-in-audit-scope"]
    assert scope.message.endswith("but absent from the WebTrust BR list for 2020-10-30..2021-10-29")
    assert scope.due == datetime(2022, 1, 29, tzinfo=UTC)


def _entry(sha: str, audit: AuditPeriod) -> AuditScopeEntry:
    return AuditScopeEntry(sha, audit, "test")


def test_audits_of_another_operator_do_not_judge_the_pairing() -> None:
    other = AuditPeriod("WebTrust BR", date(2019, 10, 30), date(2020, 10, 29))
    listed = replace(_record(OV_G4, audit_scope=(_entry(OV_G4, other),)), operator="secom")
    findings = reconcile(Side("secom", (listed, _record(DV_G4))), Side("jprs", ()), AT)
    assert "not-in-audit-scope" not in {f.code for f in findings}


def test_the_next_audit_report_is_due_a_year_and_92_days_after_a_period_ends() -> None:
    assert next_report_due(date(2020, 10, 29)) == datetime(2022, 1, 29, tzinfo=UTC)


def test_technically_constrained_per_ccadb_needs_no_audit() -> None:
    disclosure = Disclosure(
        OV_G4,
        "test",
        "SECOM",
        "JPRS",
        "Intermediate Certificate",
        "Not Revoked",
        None,
        "",
        True,
        (),
        (),
    )
    record = _record(OV_G4, disclosure=disclosure)
    assert reconcile(Side("secom", (record,)), Side("jprs", (record,)), AT) == ()
    audited = replace(
        disclosure,
        technically_constrained=False,
        audits=(CcadbAudit("br", "", "WebTrust", None, None, date(2020, 10, 29)),),
    )
    record = _record(OV_G4, disclosure=audited)
    assert reconcile(Side("secom", (record,)), Side("jprs", (record,)), AT) == ()


@pytest.mark.parametrize(
    ("serial_hex", "declared", "deviates"),
    [
        ("22B9B172FA931A5B74", 16, True),  # the incident: 9 bytes
        ("7F" + "00" * 15, 16, False),
        ("00" + "80" * 16, 16, False),  # 16 bytes with the sign byte DER adds
        ("01" + "80" * 16, 16, True),  # 17 significant bytes
    ],
)
def test_serial_length_allows_the_der_sign_byte(
    serial_hex: str, declared: int, deviates: bool
) -> None:
    info = replace(certificates()[OV_G4], serial_hex=serial_hex)
    found = profile.deviations_from(info, OperatorProfile("jprs", serial_bytes=declared))
    assert bool(found) is deviates


@pytest.mark.parametrize(
    ("issued", "applies"),
    [
        (datetime(2019, 6, 30, 23, 59, tzinfo=UTC), False),
        (datetime(2019, 7, 1, tzinfo=UTC), True),  # from: inclusive
        (datetime(2029, 12, 31, tzinfo=UTC), True),
        (datetime(2030, 1, 1, tzinfo=UTC), False),  # until: exclusive
    ],
)
def test_a_profile_binds_the_certificates_issued_within_its_dates(
    issued: datetime, applies: bool
) -> None:
    dated = OperatorProfile(
        "jprs",
        serial_bytes=16,
        effective_from=datetime(2019, 7, 1, tzinfo=UTC),
        effective_until=datetime(2030, 1, 1, tzinfo=UTC),
    )
    info = replace(certificates()[OV_G4], serial_hex="22B9B172FA931A5B74", not_before=issued)
    found = profile.deviations_from(info, dated)
    assert found == (["serial is 9 bytes, not 16"] if applies else [])


def test_profile_deviation_names_each_declarer_once() -> None:
    case = load(GOLDEN / "profile-deviation.json")
    findings = [f for f in reconcile(case.root, case.sub, case.at) if f.sha256.startswith("DB2F")]
    (finding,) = findings
    assert finding.message.endswith(
        "deviates from its profile: no EKU extension (any usage), not only 1.3.6.1.5.5.7.3.1 "
        "(declared by jprs); serial is 9 bytes, not 16 (declared by jprs and secom); "
        "valid 3653 days, more than 3650 (declared by jprs)"
    )


def test_stale_peer_messages() -> None:
    case = load(GOLDEN / "stale-peer.json")
    ctx = Context.of(case.root, case.sub, case.at)
    assert stale_peer.staleness(case.root, ctx) == (
        "version 4 issued 2020-12-01T00:00:00Z is older than its maximum age of 7 days"
    )
    assert stale_peer.staleness(case.sub, ctx) == (
        "version 9 issued 2020-12-01T00:00:00Z expired 2020-12-31T00:00:00Z"
    )
    hours = replace(case.root, max_age=timedelta(hours=36))
    assert stale_peer.staleness(hours, ctx).endswith("maximum age of 36 hours")
    assert stale_peer.staleness(Side("jprs", ()), ctx) == ""


def test_disappeared_is_quiet_for_a_record_revoked_in_the_previous_snapshot() -> None:
    revoked = Revocation(datetime(2020, 12, 1, tzinfo=UTC), "superseded", "log")
    previous = (_record(OV_G4, revocation=revoked),)
    sub = Side("jprs", (), previous=previous)
    assert reconcile(Side("secom", ()), sub, AT) == ()
    sub = Side("jprs", (), previous=(_record(OV_G4),))
    (finding,) = reconcile(Side("secom", ()), sub, AT)
    assert finding.message == (
        "it was in jprs's previous snapshot and is "
        "not in its current one, though it is neither revoked nor expired"
    )


def test_an_offline_root_list_without_operators_is_not_judged_for_attribution() -> None:
    plain = CertRecord(certificates()[OV_G4])
    assert reconcile(Side("root", (plain,)), Side("subordinate", (plain,)), AT) == ()
    attributed = _record(DV_G4)
    findings = reconcile(Side("root", (plain, attributed)), Side("subordinate", (plain,)), AT)
    assert ("unattributed", OV_G4) in _codes(findings)


def test_log_split_view_message_and_the_cases_it_leaves_to_the_agents() -> None:
    case = load(GOLDEN / "log-split-view.json")
    assert case.root.header is not None and case.sub.header is not None
    (finding,) = [f for f in reconcile(case.root, case.sub, case.at) if f.code == "log-split-view"]
    assert finding.message == (
        "secom's snapshot version 4 and jprs's version 9 carry checkpoints of log "
        "'demo-exchange' of size 12 with different root hashes: the exchange showed the two "
        "parties different logs"
    )
    root_note = case.root.header.log_checkpoint
    quiet = {
        "same root": root_note,
        "other size": root_note.replace(b"\n12\n", b"\n13\n"),
        "none verified yet": b"",
        "not a note": b"demo-exchange\n12\n",
    }
    for name, note in quiet.items():
        sub = replace(case.sub, header=replace(case.sub.header, log_checkpoint=note))
        codes = {f.code for f in reconcile(case.root, sub, case.at)}
        assert "log-split-view" not in codes, name


def test_the_context_finds_the_few_records_with_a_view_in_union_order() -> None:
    # The rules about disclosures, lifecycles and audit scope walk these instead of every
    # certificate, so each must give what a walk of union() would: SHA-256 order, and the
    # root's disclosure where both sides hold one, else whichever side's there is.
    def told(sha: str, source: str) -> Disclosure:
        return Disclosure(sha, source, "SECOM", "JPRS", "Intermediate Certificate",
                          "Not Revoked", None, "", False, (), ())  # fmt: skip

    root = (_record(OV_G4, disclosure=told(OV_G4, "root")), _record(OV_BUG))
    sub = (
        _record(OV_G4, disclosure=told(OV_G4, "sub")),
        _record(DV_G4, lifecycle="unused"),
        _record(OV_BUG, disclosure=told(OV_BUG, "sub"), lifecycle="unused"),
    )
    ctx = Context.of(Side("secom", root), Side("jprs", sub), AT)
    assert [(sha, d.source) for sha, d in ctx.disclosures().items()] == [
        (OV_BUG, "sub"),
        (OV_G4, "root"),
    ]
    assert ctx.with_view("lifecycle") == [OV_BUG, DV_G4]
    assert [ctx.record(sha) for sha in (OV_BUG, OV_G4, DV_G4)] == [root[1], root[0], sub[1]]
    assert ctx.with_view("audit_scope") == []
