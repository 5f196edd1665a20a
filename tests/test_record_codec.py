"""The public view, audit scope, evidence, attribution and profiles survive a snapshot."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.exchange.rejections import MalformedSnapshot
from invsync.agent.exchange.snapshot import build_payload, decode_payload
from invsync.agent.model.facts import AuditPeriod, AuditScopeEntry, CcadbAudit, Disclosure
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertRecord, Revocation, SourceRef, parse_certificate
from invsync.v1 import invsync_pb2 as pb
from tests.paths import SECOM_JPRS

BUG = SECOM_JPRS / "individual/JPRS_OV_G3_bug1695993_21C06633.pem"
T0 = datetime(2021, 3, 10, tzinfo=UTC)


def _record() -> CertRecord:
    cert = x509.load_pem_x509_certificate(BUG.read_bytes())
    info = parse_certificate(cert.public_bytes(Encoding.DER))
    audit = AuditPeriod("WebTrust BR", date(2019, 10, 30), date(2020, 10, 29), date(2021, 1, 20))
    revoked = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "issuance-log:l.jsonl:3")
    crl = Revocation(datetime(2021, 3, 9, 1, tzinfo=UTC), "", "crl:root2.crl#4", "sha1")
    return CertRecord(
        info,
        operator="jprs",
        lifecycle="unused",
        revocation=revoked,
        sources=(SourceRef("issuance-log", "l.jsonl:3", T0, T0),),
        attribution="issuance-log",
        disclosure=Disclosure(
            sha256=info.sha256,
            source="ccadb:v5.csv:7",
            ca_owner="SECOM Trust Systems CO.,LTD.",
            subordinate_ca_owner="Japan Registry Services Co., Ltd.",
            record_type="Intermediate Certificate",
            revocation_status="Revoked",
            revocation_date=date(2021, 3, 9),
            revocation_reason="",
            technically_constrained=False,
            derived_trust_bits=("Server Authentication", "Client Authentication"),
            audits=(CcadbAudit("br", "https://a.example/br.pdf", "WebTrust", None, None, None),),
        ),
        audit_scope=(AuditScopeEntry(info.sha256, audit, "audit.csv:12", ("WTBRSSL",)),),
        revocation_evidence=(revoked, crl),
    )


def _payload(record: CertRecord, profiles: tuple[OperatorProfile, ...] = ()) -> bytes:
    return build_payload(
        party="secom",
        pairing="secom-jprs",
        role="root",
        version=1,
        issued_at=T0,
        expires_at=T0 + timedelta(days=1),
        records=[record],
        profiles=profiles,
    )


def test_every_fact_round_trips() -> None:
    record = _record()
    profile = OperatorProfile("jprs", 16, ("1.3.6.1.5.5.7.3.1",), 3650)
    snapshot = decode_payload(_payload(record, (profile,)))
    assert snapshot.records == (record,)
    assert snapshot.header.profiles == (profile,)


def test_a_profiles_effective_dates_round_trip_and_a_profile_without_them_encodes_as_before() -> (
    None
):
    dated = OperatorProfile(
        "jprs",
        serial_bytes=16,
        effective_from=datetime(2019, 7, 1, tzinfo=UTC),
        effective_until=datetime(2030, 1, 1, tzinfo=UTC),
    )
    (decoded,) = decode_payload(_payload(_record(), (dated,))).header.profiles
    assert decoded == dated
    # Signed snapshot headers of agents older than the dates stay byte for byte what they were.
    undated = OperatorProfile("jprs", serial_bytes=16)
    msg = pb.SnapshotPayload.FromString(_payload(_record(), (undated,)))
    (profile_msg,) = msg.header.profiles
    assert (
        profile_msg.SerializeToString()
        == pb.OperatorProfile(operator="jprs", serial_bytes=16).SerializeToString()
    )


def test_an_undeclared_profile_field_stays_undeclared() -> None:
    snapshot = decode_payload(_payload(_record(), (OperatorProfile("jprs", serial_bytes=16),)))
    (profile,) = snapshot.header.profiles
    assert (profile.max_validity_days, profile.allowed_ekus) == (None, ())


def test_a_bad_audit_date_names_the_record() -> None:
    msg = pb.SnapshotPayload.FromString(_payload(_record()))
    msg.records[0].audit_scope[0].audit.period_end = "2020-13-45"
    with pytest.raises(
        MalformedSnapshot,
        match=r"record 0 \(21C0663.*\) audit scope: '2020-13-45' is not a YYYY-MM-DD date",
    ):
        decode_payload(msg.SerializeToString())


def test_the_agent_store_keeps_every_fact(tmp_path: Path) -> None:
    from invsync.agent.store.agent_store import AgentStore

    record = _record()
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory([record], T0)
        assert store.inventory() == [record]


def test_records_naming_one_source_share_its_decoded_value() -> None:
    from invsync.agent.exchange.record_codec import record_from_pb, record_to_pb

    first = record_from_pb(record_to_pb(_record()), 0)
    second = record_from_pb(record_to_pb(_record()), 1)
    assert first.sources == _record().sources
    assert first.sources[0] is second.sources[0]


def test_a_bad_source_is_refused_by_name_after_a_good_one_was_decoded() -> None:
    decode_payload(_payload(_record()))  # the good source is now shared
    msg = pb.SnapshotPayload.FromString(_payload(_record()))
    msg.records[0].sources[0].first_seen.seconds = 253_402_300_800  # past 9999-12-31
    with pytest.raises(
        MalformedSnapshot,
        match=r"record 0 \(21C0663.*\) source 0: first_seen: seconds 253402300800 is outside",
    ):
        decode_payload(msg.SerializeToString())
    msg.records[0].sources[0].ClearField("first_seen")
    with pytest.raises(MalformedSnapshot, match=r"record 0 \(21C0663.*\) source 0: no times"):
        decode_payload(msg.SerializeToString())


def test_a_record_message_holds_its_own_copy_of_a_shared_source() -> None:
    from invsync.agent.exchange.record_codec import record_to_pb

    first = record_to_pb(_record())
    first.sources[0].kind = "edited"
    second = record_to_pb(_record())
    assert second.sources[0].kind == "issuance-log"
    assert second.sources[0].first_seen.ToDatetime(tzinfo=UTC) == T0


def test_the_inventory_as_stored_is_the_inventory_read_back(tmp_path: Path) -> None:
    from invsync.agent.store.agent_store import AgentStore

    record = _record()
    later = T0 + timedelta(days=3)
    moved = record.with_view(sources=(SourceRef("pem", "bundle.pem", later, later),))
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory([record], T0)
        assert store.as_stored([record]) == store.inventory() == [record]
        # Seen again by another source: the old one stays, first seen at T0.
        store.replace_inventory([moved], later)
        held = store.as_stored([moved])
        assert held == store.inventory()
        assert [s.location for s in held[0].sources] == ["l.jsonl:3", "bundle.pem"]


def test_a_source_first_seen_in_a_daylight_saving_zone_keeps_its_instant() -> None:
    from zoneinfo import ZoneInfo

    from invsync.agent.exchange.record_codec import record_to_pb

    zone = ZoneInfo("America/New_York")
    first = datetime(2021, 11, 7, 1, 30, tzinfo=zone, fold=0)
    second = datetime(2021, 11, 7, 1, 30, tzinfo=zone, fold=1)
    seconds = []
    for at in (first, second):
        record = _record().with_view(sources=(SourceRef("pem", "a.pem", at, at),))
        seconds.append(record_to_pb(record).sources[0].first_seen.seconds)
    assert seconds[1] - seconds[0] == 3600


def test_a_time_in_a_zone_with_a_fraction_of_a_second_keeps_its_instant() -> None:
    from datetime import timezone

    from invsync.agent.exchange.record_codec import timestamp

    at = datetime(2021, 3, 10, 12, tzinfo=timezone(timedelta(seconds=1, microseconds=500_000)))
    ts = timestamp(at)  # FromDatetime alone gave 11:59:58 UTC, half a second early
    assert (ts.seconds, ts.nanos) == (int(at.timestamp()), 500_000_000)


def test_a_row_digest_does_not_depend_on_shared_text_objects() -> None:
    # Found in review: a pickle writes a back-reference for a value met twice, so the digest
    # of one row changed with whether two of its times were one cached str object.
    from invsync.agent.store.agent_store import _certificate_row, row_digest

    row = _certificate_row(_record())
    text = str(row["not_before"])
    shared, apart = dict(row), dict(row)
    shared["not_before"] = shared["revoked_at"] = text
    apart["not_before"], apart["revoked_at"] = "".join(list(text)), "".join(list(text))
    assert apart["not_before"] is not apart["revoked_at"]
    assert row_digest(shared) == row_digest(apart)
    assert row_digest(shared) != row_digest({**shared, "revoked_at": "2021-03-10T00:00:00Z"})


@pytest.mark.parametrize("attribution", ["", "issuance-log:secom.jsonl", "rule:JPRS"])
def test_the_stored_facts_of_a_record_of_the_common_shape_are_its_own(attribution: str) -> None:
    """Facts of records with their attribution alone are made once per attribution: each
    record still gets the bytes of its own facts, and a record with more gets all of them."""
    from invsync.agent.exchange.record_codec import facts_from_bytes, facts_to_bytes

    full = _record()
    plain = CertRecord(full.info, attribution=attribution)
    for record in (plain, full.with_view(attribution=attribution), plain):
        facts = facts_from_bytes(facts_to_bytes(record), record.sha256)
        assert facts == {
            "attribution": record.attribution,
            "disclosure": record.disclosure,
            "audit_scope": record.audit_scope,
            "revocation_evidence": record.revocation_evidence,
        }
