"""The last few snapshots an agent process decoded (agent/exchange/recent_snapshots.py): the
same payload bytes decoded again come back without decoding, only while the cache is
installed, at most KEPT of them, and none after the cycle cleared it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from invsync.agent.exchange import delta, snapshot
from invsync.agent.exchange.recent_snapshots import KEPT, RecentSnapshots, installed
from invsync.agent.model.record import CertRecord
from tests.exchange_rig import payload


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Each payload decode_payload reads from its bytes from here on."""
    seen: list[bytes] = []
    real = delta.read_parts

    def counted(data: bytes, *args: object) -> delta.Parts:
        seen.append(data)
        return real(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(delta, "read_parts", counted)
    return seen


@pytest.fixture
def recent() -> Iterator[RecentSnapshots]:
    cache = RecentSnapshots.install()
    yield cache
    cache.uninstall()


def _versions(records: list[CertRecord], count: int) -> list[bytes]:
    return [payload(records, version=v) for v in range(1, count + 1)]


def test_a_payload_decoded_again_comes_back_as_decoded(
    records: list[CertRecord], reads: list[bytes], recent: RecentSnapshots
) -> None:
    data = payload(records)
    first = snapshot.decode_payload(data)
    assert snapshot.decode_payload(data) is first
    assert reads == [data]


def test_without_the_cache_every_decode_reads_the_bytes(
    records: list[CertRecord], reads: list[bytes]
) -> None:
    assert installed() is None
    data = payload(records)
    assert snapshot.decode_payload(data) == snapshot.decode_payload(data)
    assert reads == [data, data]


def test_the_least_recently_used_goes_first_and_a_clear_lets_all_go(
    records: list[CertRecord], reads: list[bytes], recent: RecentSnapshots
) -> None:
    versions = _versions(records, KEPT + 1)
    for data in versions:
        snapshot.decode_payload(data)
    reads.clear()
    snapshot.decode_payload(versions[-1])
    snapshot.decode_payload(versions[1])
    assert reads == []  # still kept
    snapshot.decode_payload(versions[0])
    assert reads == [versions[0]]  # the oldest was let go
    recent.clear()
    snapshot.decode_payload(versions[-1])
    assert reads == [versions[0], versions[-1]]


def test_an_uninstalled_cache_is_no_longer_consulted(records: list[CertRecord]) -> None:
    cache = RecentSnapshots.install()
    other = RecentSnapshots.install()  # the last installed wins
    cache.uninstall()
    assert installed() is other
    other.uninstall()
    assert installed() is None
