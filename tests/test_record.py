"""Fields derived from real certificates (DESIGN §3)."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from invsync.agent.model.record import CertInfo, CertRecord, SourceRef
from tests.certs import cert_infos

BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"


def _by_sha(name: str) -> dict[str, CertInfo]:
    return {info.sha256: info for info in cert_infos(name)}


def test_the_bug_certificate_fields() -> None:
    info = _by_sha("jprs_intermediates_all_generations.pem")[BUG_OV]
    assert info.serial_hex == "22B9B172FA931A5B74"
    assert info.serial_bytes == 9
    assert info.subject == (
        "CN=JPRS Organization Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP"
    )
    assert info.ski == "A11015D81BFE9E4E9A4E1DF2B65F4113821D4153"
    assert info.aki == "0A85A9776505987C4081F80F972C38F10AEC3CCF"
    assert info.is_ca and info.path_len == 0
    assert info.ekus == ("1.3.6.1.5.5.7.3.1",)
    assert info.crl_urls == ("http://repository.secomtrust.net/SC-Root2/SCRoot2CRL.crl",)
    assert not info.self_issued
    assert not info.technically_constrained  # serverAuth without name constraints


def test_the_three_ov_g3_certificates_share_one_doppelganger_key() -> None:
    g3 = [
        info
        for info in cert_infos("jprs_intermediates_all_generations.pem")
        if info.subject.startswith("CN=JPRS Organization Validation Authority - G3")
    ]
    assert len(g3) == 3
    assert len({info.doppelganger_key for info in g3}) == 1
    assert len({info.sha256 for info in g3}) == 3
    assert sorted(info.serial_bytes for info in g3) == [9, 16, 16]


def test_every_other_generation_has_a_distinct_doppelganger_key() -> None:
    infos = cert_infos("jprs_intermediates_all_generations.pem")
    groups = {info.doppelganger_key for info in infos}
    # 16 certificates: the OV and DV G3 triples collapse to one key each.
    assert len(groups) == 16 - 2 - 2


def test_a_serial_with_its_high_bit_set_keeps_its_leading_zero_byte() -> None:
    lengths = {info.serial_bytes for info in cert_infos("jprs_intermediates_all_generations.pem")}
    assert lengths <= {9, 16, 17}
    for info in cert_infos("secom_hierarchy_all_ccadb.pem"):
        assert int(info.serial_hex[:2], 16) < 0x80, info.sha256


def test_self_signed_roots_are_self_issued() -> None:
    assert all(info.self_issued for info in cert_infos("secom_roots_selfsigned.pem"))


def test_technically_constrained_follows_mozilla_policy_5_3_1() -> None:
    infos = _by_sha("secom_hierarchy_all_ccadb.pem")
    nii_g6 = [i for i in infos.values() if i.subject.startswith("CN=NII Open Domain CA - G6")]
    # Four real NII G6 certificates: two carry dNSName and iPAddress name constraints.
    constrained = {i.sha256[:12] for i in nii_g6 if i.technically_constrained}
    assert constrained == {"AE59CD71C4DE", "9C669F3AC59B"}
    assert all(i.has_name_constraints for i in nii_g6 if i.sha256[:12] in constrained)
    time_stamping = [i for i in infos.values() if i.ekus == ("1.3.6.1.5.5.7.3.8",)]
    assert time_stamping and all(i.technically_constrained for i in time_stamping)
    smime = [
        i for i in infos.values() if "1.3.6.1.5.5.7.3.4" in i.ekus and not i.has_name_constraints
    ]
    assert smime and not any(i.technically_constrained for i in smime)
    no_eku = [i for i in infos.values() if i.is_ca and not i.ekus]
    assert no_eku and not any(i.technically_constrained for i in no_eku)


def test_a_view_that_changes_nothing_is_the_record_itself() -> None:
    record = CertRecord(
        _by_sha("jprs_intermediates_all_generations.pem")[BUG_OV],
        operator="jprs",
        attribution="issuance-log",
    )
    assert record.with_view(operator="jprs", attribution="issuance-log") is record
    assert record.with_view(audit_scope=(), revocation_evidence=()) is record
    changed = record.with_view(attribution="ccadb")
    assert changed is not record
    assert (changed.attribution, changed.operator, record.attribution) == (
        "ccadb",
        "jprs",
        "issuance-log",
    )


class _Name(str):
    """A str that compares equal to one: a view holding it is not the record's own value."""


def test_a_view_of_an_equal_value_of_another_type_is_a_new_record() -> None:
    record = CertRecord(_by_sha("jprs_intermediates_all_generations.pem")[BUG_OV], operator="jprs")
    other = record.with_view(operator=_Name("jprs"))
    assert other is not record
    assert type(other.operator) is _Name
    assert record.with_view(operator=None) is not record


def test_with_sources_keeps_every_other_field_as_replace_does() -> None:
    """`with_sources` names each field itself: a field added to CertRecord and not passed on
    there fails here, each field holding its own sentinel."""
    names = [f.name for f in dataclasses.fields(CertRecord)]
    sentinels: dict[str, Any] = {name: object() for name in names}
    record = CertRecord(**sentinels)
    sources = cast("tuple[SourceRef, ...]", object())
    made = record.with_sources(sources)
    expected = dataclasses.replace(record, sources=sources)
    assert [getattr(made, n) is getattr(expected, n) for n in names] == [True] * len(names)
    assert record.with_sources(record.sources) is record


def test_with_attribution_keeps_every_other_field_as_replace_does() -> None:
    names = [f.name for f in dataclasses.fields(CertRecord)]
    sentinels: dict[str, Any] = {name: object() for name in names}
    record = CertRecord(**sentinels)
    made = record.with_attribution("jprs", "rule:fingerprint")
    expected = dataclasses.replace(record, operator="jprs", attribution="rule:fingerprint")
    assert [getattr(made, n) is getattr(expected, n) for n in names] == [True] * len(names)
    assert record.with_attribution(record.operator, record.attribution) is record
    assert record.with_attribution(None, record.attribution) is not record
