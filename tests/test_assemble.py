"""Facts attach to the right certificates: by SHA-256, and CRL entries by issuer signature."""

from __future__ import annotations

from datetime import UTC, date, datetime

from invsync.agent.inventory.assemble import assemble
from invsync.agent.inventory.attribution import Attribution, AttributionRule
from invsync.agent.model.bundle import Facts
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, CrlRevocation, Disclosure
from invsync.agent.model.record import CertInfo, CertRecord, Revocation
from invsync.agent.sources.ccadb import normalize_owner
from tests.certs import cert_infos

BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
REVOKED = datetime(2021, 3, 9, 5, 0, tzinfo=UTC)


def _root(name: str) -> CertInfo:
    return next(i for i in cert_infos("secom_roots_selfsigned.pem") if name in i.subject)


JPRS = [CertRecord(info) for info in cert_infos("jprs_intermediates_all_generations.pem")]
ROOT2 = _root("OU=Security Communication RootCA2")
ROOT3 = _root("CN=Security Communication RootCA3")


def _crl_entry(issuer: CertInfo, serial: str) -> CrlRevocation:
    return CrlRevocation(issuer.spki_sha256, serial, REVOKED, "superseded", "crl:r2.crl#0", "sha1")


def _bug(records: list[CertRecord]) -> CertRecord:
    return next(r for r in records if r.sha256 == BUG_OV)


def test_a_crl_entry_revokes_the_certificate_its_issuer_key_signed() -> None:
    entry = _crl_entry(ROOT2, "22B9B172FA931A5B74")
    result = assemble(Facts(records=tuple(JPRS), crl_revocations=(entry,)), issuers=[ROOT2])
    bug = _bug(result.records)
    expected = Revocation(REVOKED, "superseded", "crl:r2.crl#0", "sha1")
    assert bug.revocation == expected
    assert bug.revocation_evidence == (expected,)
    assert sum(1 for r in result.records if r.revocation) == 1
    assert result.unmatched_crl_entries == ()


def test_a_crl_entry_of_another_key_with_the_same_serial_revokes_nothing() -> None:
    entry = _crl_entry(ROOT3, "22B9B172FA931A5B74")
    result = assemble(Facts(records=tuple(JPRS), crl_revocations=(entry,)), issuers=[ROOT3])
    assert all(r.revocation is None for r in result.records)
    assert result.unmatched_crl_entries == (entry,)


def test_the_partys_own_revocation_stays_effective_and_the_crl_joins_the_evidence() -> None:
    own = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "cessationOfOperation", "issuance-log:l:3")
    records = tuple(r.with_view(revocation=own) if r.sha256 == BUG_OV else r for r in JPRS)
    entry = _crl_entry(ROOT2, "22B9B172FA931A5B74")
    bug = _bug(assemble(Facts(records, crl_revocations=(entry,)), issuers=[ROOT2]).records)
    assert bug.revocation == own
    assert [r.source for r in bug.revocation_evidence] == ["issuance-log:l:3", "crl:r2.crl#0"]


def test_disclosures_and_audit_scope_attach_by_fingerprint_and_the_rest_is_reported() -> None:
    audit = AuditPeriod("WebTrust BR", date(2019, 10, 30), date(2020, 10, 29))
    listed = AuditScopeEntry(BUG_OV, audit, "audit.csv:4")
    stranger = AuditScopeEntry("AB" * 32, audit, "audit.csv:5")
    disclosure = _disclosure(BUG_OV)
    facts = Facts(tuple(JPRS), disclosures=(disclosure,), audit_scope=(listed, stranger))
    result = assemble(facts)
    bug = _bug(result.records)
    assert (bug.disclosure, bug.audit_scope) == (disclosure, (listed,))
    assert result.unmatched_audit_scope == (stranger,)


def _disclosure(sha256: str, owner: str = "Japan Registry Services Co., Ltd.") -> Disclosure:
    return Disclosure(
        sha256=sha256,
        source="ccadb:v5.csv:2",
        ca_owner="SECOM Trust Systems CO.,LTD.",
        subordinate_ca_owner=owner,
        record_type="Intermediate Certificate",
        revocation_status="Revoked",
        revocation_date=None,
        revocation_reason="",
        technically_constrained=False,
        derived_trust_bits=(),
        audits=(),
    )


def test_attribution_order_issuance_log_then_ccadb_then_rules() -> None:
    by_log = JPRS[0].with_view(operator="jprs")
    by_ccadb = JPRS[1].with_view(
        disclosure=_disclosure(JPRS[1].sha256, "JAPAN REGISTRY SERVICES CO.,LTD.")
    )
    by_ski = JPRS[2]
    nobody = JPRS[3]
    rules = (AttributionRule("jprs-ski", subject_key_ids=frozenset({JPRS[2].info.ski or ""})),)
    owners = {normalize_owner("Japan Registry Services Co., Ltd."): "jprs"}
    result = assemble(
        Facts((by_log, by_ccadb, by_ski, nobody)),
        attribution=Attribution(rules=rules, ccadb_owners=owners),
    )
    seen = {r.sha256: (r.operator, r.attribution) for r in result.records}
    assert seen == {
        by_log.sha256: ("jprs", "issuance-log"),
        by_ccadb.sha256: ("jprs", "ccadb"),
        by_ski.sha256: ("jprs-ski", "rule:subject-key-id"),
        nobody.sha256: (None, ""),
    }


def test_subject_organization_and_fingerprint_rules() -> None:
    org = AttributionRule(
        "jprs", subject_organizations=frozenset({"Japan Registry Services Co., Ltd."})
    )
    pinned = AttributionRule("other", sha256=frozenset({BUG_OV}))
    result = assemble(Facts(tuple(JPRS)), attribution=Attribution(rules=(pinned, org)))
    kinds = {r.attribution for r in result.records if r.sha256 != BUG_OV}
    assert kinds == {"rule:subject-organization"}
    # The first rule decides; the organization rule naming another operator is kept as a
    # conflict, which the report shows (`attribution-conflict`) and the root may acknowledge.
    assert (_bug(result.records).operator, _bug(result.records).attribution) == (
        "other",
        "rule:fingerprint; conflicting: rule:subject-organization says jprs",
    )


def test_both_ccadb_spellings_of_an_owner_agree() -> None:
    assert normalize_owner("SECOM Trust Systems CO.,LTD.") == normalize_owner(
        "SECOM Trust Systems Co., Ltd."
    )
    assert normalize_owner("SECOM Trust Systems CO.,LTD.") != normalize_owner(
        "Japan Registry Services Co., Ltd."
    )
