"""When an agent pushes: the first time, on a change of content, or to refresh an old snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.daemon import freshness
from invsync.agent.daemon.freshness import PushReason, push_reason, same_content
from invsync.agent.exchange.delta import header_end
from invsync.agent.exchange.snapshot import build_payload
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.record import CertRecord, Revocation, SourceRef
from invsync.v1 import invsync_pb2 as pb

NOW = datetime(2021, 3, 1, tzinfo=UTC)
REFRESH = timedelta(hours=12)


@pytest.fixture(scope="module")
def viewed_records(jprs_records: tuple[CertRecord, ...]) -> list[CertRecord]:
    """`jprs_records` as collected from a PEM file: first seen 30 days before NOW, last at NOW."""
    seen = SourceRef("pem", "jprs.pem", NOW - timedelta(days=30), NOW)
    return [r.with_view(sources=(seen,)) for r in jprs_records]


def payload(
    records: list[CertRecord], version: int = 1, at: datetime = NOW, **extra: object
) -> bytes:
    return build_payload(
        party="jprs",
        pairing="secom-jprs",
        role="subordinate",
        version=version,
        issued_at=at,
        expires_at=at + timedelta(days=1),
        previous_digest=b"\x22" * 32 if version > 1 else b"",
        records=records,
        **extra,  # type: ignore[arg-type]
    )


def seen_again(records: list[CertRecord], at: datetime) -> list[CertRecord]:
    """The same records after another collection: every source's last_seen moved on."""
    return [
        r.with_view(
            sources=tuple(SourceRef(s.kind, s.location, s.first_seen, at) for s in r.sources)
        )
        for r in records
    ]


def test_the_first_snapshot_is_always_pushed(viewed_records: list[CertRecord]) -> None:
    reason = push_reason(None, None, payload(viewed_records), now=NOW, refresh_after=REFRESH)
    assert reason is PushReason.FIRST


def test_a_rebuild_of_the_same_inventory_an_hour_later_is_not_pushed(
    viewed_records: list[CertRecord],
) -> None:
    later = NOW + timedelta(hours=1)
    candidate = payload(seen_again(viewed_records, later), version=2, at=later)
    assert candidate != payload(viewed_records)  # version, times, digest and last_seen all differ
    assert same_content(payload(viewed_records), candidate)
    assert (
        push_reason(payload(viewed_records), NOW, candidate, now=later, refresh_after=REFRESH)
        is None
    )


def test_an_unchanged_inventory_is_pushed_again_once_the_snapshot_reaches_the_refresh_age(
    viewed_records: list[CertRecord],
) -> None:
    at = NOW + REFRESH
    candidate = payload(viewed_records, version=2, at=at)
    last = payload(viewed_records)
    assert push_reason(last, NOW, candidate, now=at, refresh_after=REFRESH) is PushReason.REFRESH
    just_before = at - timedelta(seconds=1)
    assert push_reason(last, NOW, candidate, now=just_before, refresh_after=REFRESH) is None


@pytest.mark.parametrize(
    "change",
    ["a certificate gone", "a revocation", "a new source", "an acknowledgement", "another scope"],
)
def test_any_change_of_content_is_pushed_at_once(
    viewed_records: list[CertRecord], change: str
) -> None:
    changed = list(viewed_records)
    extra: dict[str, object] = {}
    if change == "a certificate gone":
        changed = viewed_records[1:]
    elif change == "a revocation":
        gone = Revocation(NOW, "superseded", "issuance-log:jprs.jsonl")
        changed[0] = viewed_records[0].with_view(revocation=gone)
    elif change == "a new source":
        also = SourceRef("ccadb", "ccadb.csv", NOW, NOW)
        changed[0] = viewed_records[0].with_view(sources=(*viewed_records[0].sources, also))
    elif change == "an acknowledgement":
        ack = Acknowledgement(
            "profile-deviation", "AA" * 32, "fixed in 2022", NOW, NOW + timedelta(days=90)
        )
        extra["acknowledgements"] = [ack]
    else:
        extra["scope_issuer_spki"] = [b"another root key"]
    soon = NOW + timedelta(minutes=5)
    candidate = payload(changed, version=2, at=soon, **extra)
    reason = push_reason(payload(viewed_records), NOW, candidate, now=soon, refresh_after=REFRESH)
    assert reason is PushReason.CHANGED


def test_a_newer_log_checkpoint_alone_is_not_a_change_of_content(
    viewed_records: list[CertRecord],
) -> None:
    """The log grows at every exchange: a new checkpoint in the header would push every cycle."""
    last = payload(viewed_records, log_checkpoint=b"checkpoint of size 3")
    candidate = payload(viewed_records, version=2, log_checkpoint=b"checkpoint of size 9")
    assert same_content(last, candidate)
    later = NOW + timedelta(hours=1)
    assert push_reason(last, NOW, candidate, now=later, refresh_after=REFRESH) is None


def reference_key(whole: bytes) -> bytes:
    """Content as a parse of the whole set defines it: what `same_content` compares without
    parsing the records."""
    msg = pb.SnapshotPayload.FromString(whole)
    for name in ("version", "issued_at", "expires_at", "previous_digest", "log_checkpoint"):
        msg.header.ClearField(name)
    msg.header.ClearField("delta")
    key: bytes = msg.SerializeToString(deterministic=True)
    return key


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kept=st.lists(st.booleans(), min_size=1, max_size=12),
    revoked=st.integers(min_value=-1, max_value=11),
    version=st.integers(min_value=2, max_value=9),
    scope=st.booleans(),
)
def test_same_content_is_what_a_parse_of_both_sets_compares(
    viewed_records: list[CertRecord], kept: list[bool], revoked: int, version: int, scope: bool
) -> None:
    chosen = [r for r, keep in zip(viewed_records, kept, strict=False) if keep]
    if 0 <= revoked < len(chosen):
        gone = Revocation(NOW, "superseded", "issuance-log:jprs.jsonl")
        chosen[revoked] = chosen[revoked].with_view(revocation=gone)
    extra: dict[str, object] = {"scope_issuer_spki": [b"another root key"]} if scope else {}
    later = NOW + timedelta(hours=version)
    last = payload(viewed_records[: len(kept)])
    candidate = payload(seen_again(chosen, later), version=version, at=later, **extra)
    assert same_content(last, candidate) is (reference_key(last) == reference_key(candidate))


def test_a_difference_beyond_the_first_piece_compared_is_found(
    viewed_records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records are compared a piece at a time: a byte changed in the last piece counts,
    in sets of one length (whose header is the same: it is read alone)."""
    monkeypatch.setattr(freshness, "_CHUNK", 64)
    last = payload(viewed_records)
    assert len(last) - header_end(last) > 4 * 64
    flipped = last[:-5] + bytes([last[-5] ^ 1]) + last[-4:]
    assert not same_content(last, flipped)
    assert same_content(last, payload(viewed_records, version=3))
