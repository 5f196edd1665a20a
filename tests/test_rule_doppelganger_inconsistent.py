"""`doppelganger-inconsistent` on the real G3 and NII G5 groups: each kind of difference, what
it leaves to other rules, and a consistent group that gives nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from invsync.agent.inventory.scope import subordinate_scope
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, CcadbAudit, Disclosure
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.rules import doppelganger_inconsistent
from invsync.agent.reconcile.rules.context import Context
from invsync.agent.reconcile.runner import reconcile
from tests import ca_chain
from tests.ct_helpers import spki
from tests.golden_cases import certificates
from tests.headers import header

OV_2019 = "90EE548EBACACAB40207A61A378CE186B94D24AE7C55BFC83065EA96072E2B38"
OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
OV_REISSUE = "04C1871C68607515389FA3B0CFB83DBE6A4AF05E8C80E745702969F240606E36"
G5_2018 = "80F5B0D16FAE8E72B9F1346FEDD78883D4A629D1382FBCFC694F54BFC1EEDD3C"
G5_CONSTRAINED = (
    "09983A2632C033EB9449C0EBF21F9B8D4A9975C06FB8E20F4A5042E9E4CC6411",
    "DACAA09FFAD8F66EDB6ED69707A827C9E44C1F97C48F0179485F206D707B3E2B",
)
BR_2020 = AuditPeriod("WebTrust BR", date(2019, 10, 30), date(2020, 10, 29))
BR_2021 = AuditPeriod("WebTrust BR", date(2020, 10, 30), date(2021, 10, 29))
AT = datetime(2021, 3, 10, tzinfo=UTC)


def _record(sha: str, *audits: AuditPeriod, **view: object) -> CertRecord:
    scope = tuple(AuditScopeEntry(sha, audit, "test") for audit in audits)
    return CertRecord(certificates()[sha], operator="jprs").with_view(audit_scope=scope, **view)


def _revoked(reason: str) -> Revocation:
    return Revocation(datetime(2021, 3, 9, tzinfo=UTC), reason, "test")


def _check(
    *records: CertRecord, at: datetime = AT, sub: tuple[CertRecord, ...] = ()
) -> list[Finding]:
    ctx = Context.of(Side("secom", records), Side("jprs", sub or records), at)
    return list(doppelganger_inconsistent.check(ctx))


def _one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def test_a_group_audited_constrained_and_revoked_alike_gives_nothing() -> None:
    group = [_record(sha, BR_2020) for sha in (OV_2019, OV_BUG, OV_REISSUE)]
    assert _check(*group) == []
    superseded = _record(OV_BUG, BR_2020, revocation=_revoked("superseded"))
    assert _check(group[0], superseded, group[2]) == []  # a reissue: no finding


def test_a_member_an_older_audit_left_out_while_it_named_a_sibling() -> None:
    at = datetime(2022, 1, 1, tzinfo=UTC)
    findings = _check(_record(OV_2019, BR_2020, BR_2021), _record(OV_REISSUE, BR_2021), at=at)
    finding = _one(findings)
    assert (finding.sha256, finding.severity, finding.party) == (OV_REISSUE, Severity.ERROR, "jprs")
    assert finding.policy == "Mozilla Root Store Policy 3.1.3"
    assert finding.related == (OV_2019,)
    assert finding.message == (
        "valid during the period of the WebTrust BR 2019-10-30..2020-10-29 audit, whose list "
        "names its doppelganger 90EE548EBACACAB4 but not it"
    )


def test_a_live_member_the_latest_audit_left_out_is_left_to_not_in_audit_scope() -> None:
    records = (_record(OV_2019, BR_2020), _record(OV_REISSUE))
    assert _check(*records, at=datetime(2021, 1, 1, tzinfo=UTC)) == []
    codes = {f.code for f in reconcile(Side("secom", records), Side("jprs", records), AT)}
    assert codes == {"not-in-audit-scope"}


def test_a_member_not_valid_during_the_period_is_not_judged() -> None:
    before = Revocation(datetime(2019, 10, 1, tzinfo=UTC), "superseded", "test")
    gone_before = _record(OV_REISSUE, revocation=before)
    assert [f.message for f in _check(_record(OV_2019, BR_2020), gone_before)] == []
    # OV G3's 2020 reissue was issued after the 2018-2019 period ended.
    older = AuditPeriod("WebTrust BR", date(2018, 10, 30), date(2019, 10, 29))
    at = datetime(2022, 1, 1, tzinfo=UTC)
    assert _check(_record(OV_2019, older, BR_2020), _record(OV_REISSUE, BR_2020), at=at) == []


def _disclosure(sha: str, *audits: CcadbAudit) -> Disclosure:
    return Disclosure(
        sha,
        "test",
        "SECOM",
        "JPRS",
        "Intermediate Certificate",
        "Not Revoked",
        None,
        "",
        False,
        (),
        audits,
    )


def _br(end: date, kind: str = "br") -> CcadbAudit:
    return CcadbAudit(kind, "https://example.invalid/audit.pdf", "WebTrust", None, None, end)


def test_a_ccadb_record_with_an_older_or_no_audit_of_a_kind_its_sibling_gives() -> None:
    newer = _record(OV_2019, disclosure=_disclosure(OV_2019, _br(date(2021, 1, 27))))
    older = _record(OV_REISSUE, disclosure=_disclosure(OV_REISSUE, _br(date(2020, 10, 29))))
    finding = _one(_check(newer, older))
    assert (finding.sha256, finding.severity) == (OV_REISSUE, Severity.WARNING)
    assert finding.message == (
        "its CCADB record gives the br audit ending 2020-10-29, while its doppelganger "
        "90EE548EBACACAB4's gives one ending 2021-01-27"
    )
    both = _disclosure(OV_2019, _br(date(2021, 1, 27)), _br(date(2021, 1, 27), "standard"))
    standard_only = _disclosure(OV_REISSUE, _br(date(2021, 1, 27), "standard"))
    records = (_record(OV_2019, disclosure=both), _record(OV_REISSUE, disclosure=standard_only))
    finding = _one(_check(*records))
    assert finding.message.startswith("its CCADB record gives no br audit, while")


def test_a_ccadb_audit_so_old_that_audit_overdue_flags_it_is_left_to_that_rule() -> None:
    newer = _record(OV_2019, disclosure=_disclosure(OV_2019, _br(date(2021, 1, 27))))
    older = _record(OV_REISSUE, disclosure=_disclosure(OV_REISSUE, _br(date(2019, 10, 29))))
    assert _check(newer, older) == []
    findings = reconcile(Side("secom", (newer, older)), Side("jprs", (newer, older)), AT)
    assert {(f.code, f.sha256) for f in findings} == {("audit-overdue", OV_REISSUE)}


def test_an_unconstrained_member_beside_constrained_ones() -> None:
    records = [_record(sha) for sha in (G5_2018, *G5_CONSTRAINED)]
    finding = _one(_check(*records))
    assert (finding.sha256, finding.severity) == (G5_2018, Severity.WARNING)
    assert finding.policy == "Mozilla Root Store Policy 5.3.1"
    assert finding.message == (
        "not technically constrained while its doppelgangers 09983A2632C033EB, DACAA09FFAD8F66E "
        "are: the key issues without constraint through this one, so revoke it or audit and "
        "disclose the CA as capable"
    )
    revoked = _record(G5_2018, revocation=_revoked("superseded"))
    assert _check(revoked, *records[1:]) == []


def test_technically_constrained_per_ccadb_counts_as_constrained() -> None:
    flagged = Disclosure(
        OV_REISSUE,
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
    finding = _one(_check(_record(OV_2019), _record(OV_REISSUE, disclosure=flagged)))
    assert finding.sha256 == OV_2019
    assert finding.message.startswith("not technically constrained while its doppelganger 04C1")


def test_a_reason_that_hides_a_sibling_key_compromise_is_an_error() -> None:
    records = (
        _record(OV_BUG, revocation=_revoked("keyCompromise")),
        _record(OV_REISSUE, revocation=_revoked("superseded")),
    )
    finding = _one(_check(*records))
    assert (finding.sha256, finding.severity, finding.policy) == (
        OV_REISSUE,
        Severity.ERROR,
        "TLS BR 4.9.1.2",
    )
    assert finding.message == (
        "revoked (superseded) on 2021-03-09 while its doppelganger 21C066332D6B92DD was revoked "
        "for keyCompromise: its reason must say the key is compromised too"
    )


def test_a_revocation_that_says_the_ca_stopped_while_a_sibling_is_live_is_a_notice() -> None:
    records = (_record(OV_2019), _record(OV_BUG, revocation=_revoked("cessationOfOperation")))
    finding = _one(_check(*records))
    assert (finding.sha256, finding.severity) == (OV_BUG, Severity.NOTICE)
    assert finding.message == (
        "revoked (cessationOfOperation) on 2021-03-09 while its doppelganger 90EE548EBACACAB4 is "
        "live: revoke it too if the CA stopped, or give superseded as the reason if this one was "
        "replaced"
    )


def test_a_live_sibling_of_a_key_compromise_is_left_to_doppelganger_untracked() -> None:
    records = (_record(OV_2019), _record(OV_BUG, revocation=_revoked("keyCompromise")))
    assert _check(*records) == []
    findings = reconcile(Side("secom", records), Side("jprs", records), AT)
    assert {(f.code, f.sha256) for f in findings} == {("doppelganger-untracked", OV_2019)}


def test_either_partys_revocation_gives_the_same_finding() -> None:
    live = (_record(OV_2019), _record(OV_BUG))
    revoked = (_record(OV_2019), _record(OV_BUG, revocation=_revoked("cessationOfOperation")))
    at_root = _check(*revoked, sub=live)
    at_sub = _check(*live, sub=revoked)
    assert at_root == at_sub
    assert [f.to_json() for f in at_root] == [f.to_json() for f in _check(*revoked)]


def test_several_differences_make_one_finding_at_the_worst_severity() -> None:
    at = datetime(2022, 1, 1, tzinfo=UTC)
    left_out = _record(OV_BUG, revocation=_revoked("cessationOfOperation"))
    finding = _one(_check(_record(OV_2019, BR_2020, BR_2021), left_out, at=at))
    assert finding.severity == Severity.WARNING  # the audit gaps; the revocation is a notice
    assert finding.message.count("; ") == 2
    assert finding.message.endswith(
        "is live: revoke it too if the CA stopped, or give superseded as the reason if this one "
        "was replaced"
    )


def test_another_roots_certificate_is_a_sibling_judged_in_its_own_pairing() -> None:
    """A cross-sign (tests/test_cross_sign.py): one key, a certificate from each root. Root one
    revoked its certificate for keyCompromise, the subordinate records root two's as superseded."""
    roots = [ca_chain.root(f"Test Root {n}", f"Root {n} Inc.") for n in ("One", "Two")]
    key = ec.generate_private_key(ec.SECP256R1())
    one, two = (
        ca_chain.record(ca_chain.issue(root, "Test Sub CA", "Sub Inc.", key=key, serial=n), "sub")
        for n, root in ((0x1111, roots[0]), (0x2222, roots[1]))
    )
    at = datetime(2021, 3, 1, tzinfo=UTC)
    revoked = Revocation(at - timedelta(days=2), "keyCompromise", "test")
    one = replace(one, revocation=revoked)
    two = replace(two, revocation=replace(revoked, reason="superseded"))

    def pairing(index: int, listed: CertRecord) -> list[Finding]:
        scope = (spki(roots[index].key.public_key()),)
        root = Side(
            "root", [listed], header=header("root", "root-sub", at, role="root", scope=scope)
        )
        held = subordinate_scope([one, two], issuer_spkis=list(scope))
        sub_header = header("sub", "root-sub", at, role="subordinate", scope=scope)
        return list(
            doppelganger_inconsistent.check(
                Context.of(root, Side("sub", held, header=sub_header), at)
            )
        )

    assert pairing(0, one) == []  # root two's certificate: not this pairing's to judge
    finding = _one(pairing(1, two))
    assert (finding.sha256, finding.severity, finding.related) == (
        two.sha256,
        Severity.ERROR,
        (one.sha256,),
    )
