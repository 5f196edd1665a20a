"""When an agent pushes: the first time, on a change of content, or to refresh an old snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.daemon.freshness import PushReason, content_key, push_reason
from invsync.agent.exchange.snapshot import build_payload
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.record import CertRecord, Revocation, SourceRef

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
    assert content_key(candidate) == content_key(payload(viewed_records))
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
    assert content_key(last) == content_key(candidate)
    later = NOW + timedelta(hours=1)
    assert push_reason(last, NOW, candidate, now=later, refresh_after=REFRESH) is None
