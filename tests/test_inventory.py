"""Merging the records of several sources into one inventory."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.errors import SourceError
from invsync.agent.model.merge import merge
from invsync.agent.model.record import CertRecord, Revocation, SourceRef
from invsync.agent.sources.pem import pem_certificates
from invsync.agent.sources.registry import load_sources
from tests.paths import SECOM_JPRS

FIXTURES = SECOM_JPRS
JPRS_BUNDLE = FIXTURES / "jprs_intermediates_all_generations.pem"
BUG_OV_PEM = FIXTURES / "individual" / "JPRS_OV_G3_bug1695993_21C06633.pem"
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
T0 = datetime(2021, 3, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
REVOKED = datetime(2021, 3, 9, tzinfo=UTC)
INFO = pem_certificates(BUG_OV_PEM.read_text(), str)[0]


def _rec(location: str, **view: object) -> CertRecord:
    ref = SourceRef("issuance-log", location, T0, T0)
    return CertRecord(INFO, sources=(ref,)).with_view(**view)


def test_merge_sorts_by_sha256_and_keeps_distinct_certificates() -> None:
    infos = pem_certificates(JPRS_BUNDLE.read_text(), str)
    records = [CertRecord(info) for info in infos]
    merged = merge(reversed(records))
    assert [r.sha256 for r in merged] == sorted(info.sha256 for info in infos)


def test_same_certificate_merges_sources_and_views() -> None:
    [merged] = merge([_rec("a:1", operator="jprs"), _rec("b:1", lifecycle="unused")])
    assert (merged.operator, merged.lifecycle) == ("jprs", "unused")
    assert [ref.location for ref in merged.sources] == ["a:1", "b:1"]


def test_same_source_twice_is_one_ref_spanning_both_sightings() -> None:
    later = CertRecord(INFO, sources=(SourceRef("issuance-log", "a:1", T1, T1),))
    [merged] = merge([_rec("a:1"), later])
    assert merged.sources == (SourceRef("issuance-log", "a:1", T0, T1),)


def test_revocation_reason_can_come_after_the_time() -> None:
    bare = Revocation(REVOKED, "", "issuance-log:a:1")
    reasoned = Revocation(REVOKED, "cessationOfOperation", "crl:x.crl")
    [merged] = merge([_rec("a:1", revocation=bare), _rec("b:1", revocation=reasoned)])
    assert merged.revocation == Revocation(REVOKED, "cessationOfOperation", "issuance-log:a:1")


def test_agreeing_sources_are_not_a_conflict() -> None:
    [merged] = merge([_rec("a:1", operator="jprs"), _rec("b:2", operator="jprs")])
    assert merged.operator == "jprs"


def test_conflicting_operator_names_certificate_and_both_sources() -> None:
    expected = (
        f"certificate {BUG_OV}: sources disagree on operator:"
        " 'jprs' (issuance-log:a:1) vs 'secom' (issuance-log:b:2)"
    )
    with pytest.raises(SourceError, match=re.escape(expected)):
        merge([_rec("a:1", operator="jprs"), _rec("b:2", operator="secom")])


def test_conflicting_lifecycle() -> None:
    expected = "sources disagree on lifecycle: 'in-use' (issuance-log:a:1) vs 'unused'"
    with pytest.raises(SourceError, match=re.escape(expected)):
        merge([_rec("a:1", lifecycle="in-use"), _rec("b:2", lifecycle="unused")])


def test_conflicting_revocation_time() -> None:
    first = Revocation(REVOKED, "", "issuance-log:a:1")
    second = Revocation(REVOKED + timedelta(hours=1), "", "crl:x.crl")
    expected = (
        "sources disagree on revocation time:"
        " 2021-03-09T00:00:00Z (issuance-log:a:1) vs 2021-03-09T01:00:00Z (crl:x.crl)"
    )
    with pytest.raises(SourceError, match=re.escape(expected)):
        merge([_rec("a:1", revocation=first), _rec("b:2", revocation=second)])


def test_load_sources_merges_a_bundle_and_a_log(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text(json.dumps({"certificate": BUG_OV_PEM.read_text(), "operator": "jprs"}) + "\n")
    records = load_sources([str(JPRS_BUNDLE), str(log)], T0)
    assert len(records) == 16
    bug = next(r for r in records if r.sha256 == BUG_OV)
    assert bug.operator == "jprs"
    assert [ref.kind for ref in bug.sources] == ["pem", "issuance-log"]


def test_load_sources_refuses_two_logs_that_disagree(tmp_path: Path) -> None:
    specs = []
    for name, operator in (("secom.jsonl", "jprs"), ("other.jsonl", "secom")):
        entry = {"certificate": BUG_OV_PEM.read_text(), "operator": operator}
        (tmp_path / name).write_text(json.dumps(entry) + "\n")
        specs.append(str(tmp_path / name))
    expected = (
        f"certificate {BUG_OV}: sources disagree on operator:"
        f" 'jprs' (issuance-log:{specs[0]}:1) vs 'secom' (issuance-log:{specs[1]}:1)"
    )
    with pytest.raises(SourceError, match=re.escape(expected)):
        load_sources(specs, T0)
