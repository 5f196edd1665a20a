"""The last few snapshots an agent process decoded (agent/exchange/recent_snapshots.py): the
same payload bytes decoded again come back without decoding, only while the cache is
installed, at most KEPT of them, and none after the cycle cleared it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from invsync.agent.cli import agent as agent_cli
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import SourceError
from invsync.agent.exchange import delta, snapshot
from invsync.agent.exchange.recent_snapshots import KEPT, RecentSnapshots, installed
from invsync.agent.exchange.rejections import MalformedSnapshot
from invsync.agent.model.record import CertRecord
from tests.exchange_rig import payload
from tests.test_delta import base_of, changed
from tests.test_delta import snapshot as delta_snapshot


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


def test_a_delta_decoded_before_is_still_refused_without_its_base_or_on_another(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """What a fresh decode refuses, a kept one is not answered to: the restore tries a delta on
    each of several bases and takes the one that decodes."""
    v1 = delta_snapshot(records)
    v2 = delta_snapshot(changed(records), 2, v1)
    decoded = snapshot.decode_payload(v2.payload, base=base_of(v1))
    with pytest.raises(MalformedSnapshot, match=r"and that base is not held here"):
        snapshot.decode_payload(v2.payload)
    with pytest.raises(MalformedSnapshot, match=r"not on the snapshot held here"):
        snapshot.decode_payload(v2.payload, base=base_of(delta_snapshot(records[1:])))
    assert snapshot.decode_payload(v2.payload, base=base_of(v1)) is decoded
    assert snapshot.decode_payload(v2.payload, full=v2.full) is decoded


def test_a_failed_cycle_lets_its_decoded_snapshots_go(
    fed: Path, records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(load_agent_config(fed / "jprs.toml"))
    try:
        assert installed() is agent.recent
        kept = snapshot.decode_payload(payload(records))
        assert agent.recent.get(kept.payload_sha256) is kept

        def failing() -> int:
            raise SourceError("jprs.pem: cannot read file: permission denied")

        monkeypatch.setattr(agent, "collect", failing)
        with pytest.raises(SourceError, match="permission denied"):
            agent_cli._cycle(agent, 1)
        assert agent.recent.get(kept.payload_sha256) is None
    finally:
        agent.close()
    assert installed() is None
