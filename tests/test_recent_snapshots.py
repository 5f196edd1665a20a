"""The last few snapshots an agent process decoded (agent/exchange/recent_snapshots.py): the
same payload bytes decoded again come back without decoding, only while the cache is
installed, at most KEPT of them during a cycle, and after it only each pairing's newest."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from invsync.agent.cli import agent as agent_cli
from invsync.agent.config.settings import PairingConfig, load_agent_config
from invsync.agent.daemon import push
from invsync.agent.daemon.cycle import Agent
from invsync.agent.daemon.report_check import ReportCheck
from invsync.agent.daemon.rotation import PeerKeys
from invsync.agent.errors import SourceError, StoreError
from invsync.agent.exchange import delta, snapshot
from invsync.agent.exchange.client import ExchangeClient, Refused
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.recent_snapshots import KEPT, RecentSnapshots, installed
from invsync.agent.exchange.rejections import MalformedSnapshot
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, Base, Built, Served
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.store.agent_store import AgentStore, SentSnapshot
from invsync.agent.store.facts_cache import FactsCache
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, payload
from tests.test_delta import base_of, changed
from tests.test_delta import snapshot as delta_snapshot

PARTIES = ("jprs", "secom")


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


def _draft(records: list[CertRecord]) -> tuple[push.Draft, list[bytes]]:
    """jprs's second snapshot, a delta, as `push.draft` leaves it; and both whole sets."""
    v1 = delta_snapshot(records)
    v2 = delta_snapshot(changed(records), 2, v1)
    sha = hashlib.sha256(v1.payload).hexdigest()
    last = SentSnapshot(PAIRING, 1, v1.payload, sha, SNAPSHOT_PAYLOAD_TYPE, (), NOW, NOW)
    draft = push.Draft(last, v2, 2, NOW, [], False, v1.payload)
    return draft, [v1.payload, v2.payload]


class _Agent:
    """What `push._meanwhile` takes of an agent: its facts cache (real, on a fresh store)."""

    def __init__(self, path: Path) -> None:
        self.store = AgentStore(path)
        self.facts = FactsCache(self.store)


def test_the_snapshot_pushed_and_the_one_before_are_decoded_while_the_server_takes_it(
    tmp_path: Path, records: list[CertRecord], reads: list[bytes], recent: RecentSnapshots
) -> None:
    """The report check that follows decodes the same bytes again, answered from the cache:
    decoding them during the push is work the agent no longer waits for afterwards."""
    draft, payloads = _draft(records)
    agent = _Agent(tmp_path / "agent.db")
    try:
        push._meanwhile(agent, draft)  # type: ignore[arg-type]
    finally:
        agent.store.close()
    digests = [hashlib.sha256(data).hexdigest() for data in payloads]
    assert [recent.get(digest) is not None for digest in digests] == [True, True]
    reads.clear()
    current = snapshot.decode_payload(draft.payload, full=draft.full)
    assert draft.last is not None
    assert draft.last.decoded().header.version == 1
    assert reads == [] and current.header.version == 2


def test_nothing_is_decoded_during_a_push_without_the_cache_nor_raised_for_bad_bytes(
    tmp_path: Path, records: list[CertRecord], reads: list[bytes]
) -> None:
    draft, _ = _draft(records)
    agent = _Agent(tmp_path / "agent.db")
    try:
        reads.clear()
        push._meanwhile(agent, draft)  # type: ignore[arg-type]
        assert reads == []
        cache = RecentSnapshots.install()
        try:
            # A payload that does not decode: the report check will say so.
            push._meanwhile(agent, replace(draft, built=Built(b"\x0a\x01", draft.full), last=None))  # type: ignore[arg-type]
            assert reads == [b"\x0a\x01"] and len(cache) == 0
        finally:
            cache.uninstall()
    finally:
        agent.store.close()


def test_the_push_runs_beside_what_the_agent_does_meanwhile() -> None:
    """Each side waits for the other to start: done one after the other, both would time out."""
    started, meanwhile_started = threading.Event(), threading.Event()
    threads: list[str] = []

    def pushing() -> str:
        started.set()
        threads.append(threading.current_thread().name)
        assert meanwhile_started.wait(5), "meanwhile never ran during the push"
        return "receipt"

    def meanwhile() -> None:
        meanwhile_started.set()
        threads.append(threading.current_thread().name)
        assert started.wait(5), "the push never started during meanwhile"

    assert push.pushed_meanwhile(pushing, meanwhile) == "receipt"
    assert threading.current_thread().name in threads and len(set(threads)) == 2


def test_a_failing_push_fails_after_meanwhile_ran() -> None:
    done: list[str] = []

    def refused() -> str:
        raise Refused("PushSnapshot: refused (stale-version)")

    with pytest.raises(Refused, match="stale-version"):
        push.pushed_meanwhile(refused, lambda: done.append("flushed"))
    assert done == ["flushed"]


def test_a_failure_meanwhile_is_raised_once_the_push_ended() -> None:
    pushed = threading.Event()

    def pushing() -> str:
        time.sleep(0.05)
        pushed.set()
        return "receipt"

    def failing() -> None:
        raise StoreError("agent.db: cannot keep derived facts: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O error"):
        push.pushed_meanwhile(pushing, failing)
    assert pushed.is_set()


def test_a_push_that_failed_too_is_named_on_the_failure_raised() -> None:
    def refused() -> str:
        raise Refused("PushSnapshot: refused (stale-version)")

    def failing() -> None:
        raise StoreError("agent.db: cannot keep derived facts: disk I/O error")

    with pytest.raises(StoreError, match="disk I/O error") as raised:
        push.pushed_meanwhile(refused, failing)
    assert raised.value.__notes__ == ["the push failed too: PushSnapshot: refused (stale-version)"]


def test_a_pairings_part_of_the_cycle_ends_keeping_each_partys_newest_snapshot(
    fed: Path, records: list[CertRecord]
) -> None:
    """An agent of many pairings holds one pairing's snapshots at a time, but for each party's
    newest, which that pairing's next cycle compares again: its other decoded snapshots and
    its stored blobs go when its part ends; another pairing's blobs stay until theirs."""
    agent = Agent(load_agent_config(fed / "jprs.toml"))
    try:
        ours = [snapshot.decode_payload(payload(records, version=v)) for v in (1, 2)]
        peers = snapshot.decode_payload(payload(records, "secom", version=5))
        for pairing in (PAIRING, "other"):
            agent.store.record_sent_snapshot(pairing, 1, b"one", "t", [], NOW, NOW, full=b"w")
        mine, others = agent.store.sent_snapshot(PAIRING, 1), agent.store.sent_snapshot("other", 1)
        agent.end_pairing(PAIRING)
        assert agent.recent.get(ours[0].payload_sha256) is None
        assert agent.recent.get(ours[1].payload_sha256) is ours[1]
        assert agent.recent.get(peers.payload_sha256) is peers
        mine_again = agent.store.sent_snapshot(PAIRING, 1)
        others_again = agent.store.sent_snapshot("other", 1)
    finally:
        agent.close()
    assert mine is not None and mine_again is not None and others is not None
    assert mine_again.payload == mine.payload and mine_again.payload is not mine.payload
    assert others_again is not None and others_again.payload is others.payload


def test_the_newest_snapshots_outlive_the_cycle_until_newer_ones_replace_them(
    records: list[CertRecord], recent: RecentSnapshots, reads: list[bytes]
) -> None:
    """The next cycle decodes its previous snapshots without reading them; a newer version of
    a party replaces its older one, the other party's stays, and another pairing's is kept
    apart; `clear` (the agent's close) lets all go."""
    v1, v2, v3 = (payload(records, version=v) for v in (1, 2, 3))
    peer = payload(records, "secom", version=7)
    elsewhere = payload(records, pairing="other")
    for data in (v1, v2, peer):
        snapshot.decode_payload(data)
    recent.end_pairing(PAIRING, PARTIES)
    snapshot.decode_payload(elsewhere)  # the other pairing's part comes after
    recent.end_pairing("other", PARTIES)
    recent.end_cycle()
    reads.clear()
    assert snapshot.decode_payload(v2).header.version == 2
    assert snapshot.decode_payload(peer).header.party == "secom"
    assert snapshot.decode_payload(elsewhere).header.pairing == "other"
    assert reads == []
    snapshot.decode_payload(v3)
    recent.end_pairing(PAIRING, PARTIES)
    recent.end_cycle()
    kept = {d: recent.get(hashlib.sha256(d).hexdigest()) is not None for d in (v1, v2, v3, peer)}
    assert kept == {v1: False, v2: False, v3: True, peer: True}
    assert recent.get(hashlib.sha256(elsewhere).hexdigest()) is not None
    recent.clear()
    assert all(recent.get(hashlib.sha256(d).hexdigest()) is None for d in (v3, peer, elsewhere))


def test_the_cycle_ends_each_pairings_part_failed_or_not(
    fed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = Agent(load_agent_config(fed / "jprs.toml"))
    ended: list[str] = []
    try:
        monkeypatch.setattr(agent, "collect", lambda: 0)
        monkeypatch.setattr(agent, "end_pairing", ended.append)

        def failing(*_: object) -> None:
            raise StoreError("agent.db: database is locked")

        monkeypatch.setattr(agent_cli, "_pairing_cycle", failing)
        with pytest.raises(StoreError, match="database is locked"):
            agent_cli._cycle(agent, 1)
    finally:
        agent.close()
    assert ended == [PAIRING]


def test_a_previous_snapshot_whose_whole_set_has_another_header_is_decoded_instead(
    tmp_path: Path, records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """A damaged row (a stored payload beside another snapshot's whole set) must not put the
    whole set's snapshot in the cache under the payload's digest: the payload is decoded."""
    v1 = delta_snapshot(records)
    other = delta_snapshot(records, issued_at=NOW - timedelta(hours=2))  # another v1
    sha = hashlib.sha256(other.payload).hexdigest()
    v2 = snapshot.build_snapshot(
        party="jprs", pairing=PAIRING, role="subordinate", version=2,
        issued_at=NOW, expires_at=NOW + timedelta(days=1), records=records[1:],
        previous_digest=bytes.fromhex(sha), base=v1.full,
    )  # fmt: skip
    assert v2.previous is not None and v2.previous.payload_sha256 == sha
    last = SentSnapshot(PAIRING, 1, other.payload, sha, SNAPSHOT_PAYLOAD_TYPE, (), NOW, NOW)
    draft = push.Draft(last, v2, 2, NOW, [], False, v1.full)
    agent = _Agent(tmp_path / "agent.db")
    try:
        push._meanwhile(agent, draft)  # type: ignore[arg-type]
    finally:
        agent.store.close()
    cached = recent.get(sha)
    assert cached is not None and cached is not v2.previous
    assert cached.header == snapshot.decode_payload(other.payload).header != v2.previous.header


def _seen(decoded: Snapshot) -> tuple[object, ...]:
    return (decoded.header, [repr(r) for r in decoded.records], decoded.payload_sha256,
            decoded.full, decoded.identities)  # fmt: skip


def _chain(records: list[CertRecord]) -> tuple[Built, Built, Built]:
    v1 = delta_snapshot(records)
    v2 = delta_snapshot(changed(records), 2, v1)
    return v1, v2, delta_snapshot(records[3:], 3, v2)


def test_the_base_a_delta_was_decoded_on_is_what_its_own_payload_decodes_to(
    records: list[CertRecord], recent: RecentSnapshots, reads: list[bytes]
) -> None:
    """The report check decodes the peer's current snapshot on the base kept here, then that
    base (the peer's previous): the second decode reads only its payload's parts, not its
    whole set again, and gives what a fresh decode gives."""
    _, v2, v3 = _chain(records)
    snapshot.decode_payload(v3.payload, base=base_of(v2))
    reads.clear()
    previous = snapshot.decode_payload(v2.payload, full=v2.full)
    assert reads == [v2.payload]
    recent.clear()
    fresh = snapshot.decode_payload(v2.payload, full=v2.full)
    assert fresh is not previous and _seen(fresh) == _seen(previous)


def test_a_base_held_already_is_not_made_again(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """A daemon keeps the peer's newest snapshot: the peer's next delta builds on it, and its
    records are not checked and kept a second time as the base."""
    _, v2, v3 = _chain(records)
    held = snapshot.decode_payload(v2.payload, full=v2.full)
    snapshot.decode_payload(v3.payload, base=base_of(v2))
    digest = hashlib.sha256(v2.payload).hexdigest()
    assert recent.base(digest, delta.read_parts(v2.full).header_bytes) is None
    assert snapshot.decode_payload(v2.payload, full=v2.full) is held


def test_a_delta_on_an_adopted_whole_set_decodes_as_on_its_bytes(
    records: list[CertRecord], recent: RecentSnapshots, reads: list[bytes]
) -> None:
    """A daemon keeps the whole set of the peer's current snapshot as it rebuilt it, once
    accepted: the peer's next delta is rebuilt on it without its bytes (a 60 MB blob, and its
    parse), to the snapshot a decode on those bytes gives."""
    v1, v2, v3 = _chain(records)
    current = snapshot.decode_payload(v2.payload, base=base_of(v1))
    assert recent.whole(current.payload_sha256) is None  # held, not yet adopted
    recent.adopt_whole(current)
    whole = recent.whole(current.payload_sha256)
    assert whole is not None
    reads.clear()
    on_held = snapshot.decode_payload(v3.payload, base=Base(current.payload_sha256, b"", whole))
    assert reads == [v3.payload]  # the base's whole set is not read
    recent.clear()
    assert recent.whole(current.payload_sha256) is None
    assert _seen(on_held) == _seen(snapshot.decode_payload(v3.payload, base=base_of(v2)))


def test_a_delta_on_an_adopted_set_decodes_only_the_records_it_brings(
    records: list[CertRecord], recent: RecentSnapshots, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records of the base it rebuilds on are its held set's records, taken by their
    bytes with their digests: only the delta's own records are hashed and decoded."""
    v1, v2, _ = _chain(records)
    current = snapshot.decode_payload(v1.payload)
    recent.adopt_whole(current)
    whole = recent.whole(current.payload_sha256)
    assert whole is not None
    decoded: list[int] = []
    real = snapshot._record_from_bytes

    def counted(data: bytes, key: bytes, index: int) -> CertRecord:
        decoded.append(index)
        return real(data, key, index)

    monkeypatch.setattr(snapshot, "_record_from_bytes", counted)
    on_held = snapshot.decode_payload(v2.payload, base=Base(current.payload_sha256, b"", whole))
    brought = delta.read_parts(v2.payload).records
    assert len(decoded) == len(brought) > 0
    kept = {id(r) for r in current.records}
    assert sum(id(r) in kept for r in on_held.records) == len(on_held.records) - len(brought)
    recent.clear()
    monkeypatch.undo()
    assert _seen(on_held) == _seen(snapshot.decode_payload(v2.payload, base=base_of(v1)))


def test_a_full_snapshot_adopted_is_the_base_of_the_next_delta(
    records: list[CertRecord], recent: RecentSnapshots, reads: list[bytes]
) -> None:
    """The peer's first snapshot (a cold cycle's) is full: its whole set is its payload, held
    as read like a rebuilt one, so the first delta on it is not rebuilt on a 60 MB blob read
    from the store and parsed again."""
    v1, v2, _ = _chain(records)
    first = snapshot.decode_payload(v1.payload)
    assert not first.header.delta and recent.whole(first.payload_sha256) is None
    recent.adopt_whole(first)
    whole = recent.whole(first.payload_sha256)
    assert whole is not None and recent.whole_form(first.payload_sha256) == v1.payload
    reads.clear()
    on_held = snapshot.decode_payload(v2.payload, base=Base(first.payload_sha256, b"", whole))
    assert reads == [v2.payload]
    recent.clear()
    assert _seen(on_held) == _seen(snapshot.decode_payload(v2.payload, base=base_of(v1)))


def test_a_one_shot_process_holds_no_whole_set(records: list[CertRecord]) -> None:
    cache = RecentSnapshots.install(wholes=False)
    try:
        v1, v2, _ = _chain(records)
        current = snapshot.decode_payload(v2.payload, base=base_of(v1))
        cache.adopt_whole(current)
        assert cache.whole(current.payload_sha256) is None
    finally:
        cache.uninstall()


def test_only_a_whole_set_held_this_cycle_is_adopted_and_the_last_two_adopted_kept(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    v1, v2, v3 = _chain(records)
    second = snapshot.decode_payload(v2.payload, base=base_of(v1))
    recent.end_pairing(PAIRING, PARTIES)  # what was held and not adopted is let go with it
    recent.adopt_whole(second)
    assert recent.whole(second.payload_sha256) is None
    third = snapshot.decode_payload(v3.payload, base=base_of(v2))
    recent.adopt_whole(third)
    recent.end_cycle()  # an adopted one outlives the cycle, as the newest snapshots do
    assert recent.whole(third.payload_sha256) is not None
    # The one before stays beside it (the report check's previous), and is let go once two
    # were adopted after it.
    recent.hold_whole(second.payload_sha256, delta.read_whole(v2.full))
    recent.adopt_whole(second)
    whole = recent.whole(second.payload_sha256)
    assert whole is not None and recent.whole(third.payload_sha256) is not None
    assert recent.whole_form(second.payload_sha256) == v2.full
    fourth = snapshot.decode_payload(delta_snapshot(records[2:], 4, v3).payload, base=base_of(v3))
    recent.adopt_whole(fourth)  # held as decoded
    assert recent.whole(third.payload_sha256) is None
    assert recent.whole(second.payload_sha256) is not None


def test_a_base_under_another_header_than_its_payloads_is_not_taken(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """A whole set kept beside another snapshot's payload (a damaged row): the delta on it
    still adds up, but the payload's own decode does not take the base made from it."""
    v1, v2, v3 = _chain(records)
    other = delta_snapshot(changed(records), 2, v1, issued_at=NOW - timedelta(hours=3))
    assert other.full != v2.full and delta.read_parts(other.full).records == (
        delta.read_parts(v2.full).records
    )
    digest = hashlib.sha256(v2.payload).hexdigest()
    snapshot.decode_payload(v3.payload, base=Base(digest, other.full))
    assert recent.base(digest, delta.read_parts(other.full).header_bytes) is not None
    previous = snapshot.decode_payload(v2.payload, full=v2.full)
    assert previous.header == delta_header(v2) != delta_header(other)


def test_a_base_whose_records_are_not_its_headers_is_not_kept(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    _, v2, v3 = _chain(records)
    parts = delta.read_parts(v2.full)
    header = pb.SnapshotHeader.FromString(parts.header_bytes)
    header.records_root = b"\x01" * 32
    damaged = delta.full_form(header.SerializeToString(deterministic=True), parts.records)
    digest = hashlib.sha256(v2.payload).hexdigest()
    current = snapshot.decode_payload(v3.payload, base=Base(digest, damaged))
    assert current.header.version == 3
    assert recent.base(digest, header.SerializeToString(deterministic=True)) is None
    assert recent.base(digest, parts.header_bytes) is None


def delta_header(built: Built) -> object:
    return snapshot.decode_header(built.payload)


def test_a_full_snapshot_as_the_base_is_what_its_payload_decodes_to(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    v1 = delta_snapshot(records)
    v2 = delta_snapshot(changed(records), 2, v1)
    snapshot.decode_payload(v2.payload, base=base_of(v1))
    previous = snapshot.decode_payload(v1.payload)
    recent.clear()
    assert _seen(snapshot.decode_payload(v1.payload)) == _seen(previous)


def test_a_base_without_a_records_root_is_not_kept(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """An older snapshot's header does not commit to its records: a base made from a whole
    set kept beside it could not be told from another, so the payload is decoded instead."""
    parts = delta.read_parts(delta_snapshot(records).full)
    header = pb.SnapshotHeader.FromString(parts.header_bytes)
    header.ClearField("records_root")
    older = delta.full_form(header.SerializeToString(deterministic=True), parts.records)
    digest = hashlib.sha256(older).hexdigest()
    v2 = snapshot.build_snapshot(
        party="jprs", pairing=PAIRING, role="subordinate", version=2,
        issued_at=NOW, expires_at=NOW + timedelta(days=1), records=changed(records),
        previous_digest=bytes.fromhex(digest), base=older,
    )  # fmt: skip
    assert snapshot.decode_payload(v2.payload, base=Base(digest, older)).header.version == 2
    assert recent.base(digest, header.SerializeToString(deterministic=True)) is None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_what_this_part_used_is_kept_over_an_older_keep_even_of_a_lower_version(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """A pending version built again (same number, other bytes) and a peer whose chain was
    reset to a lower version: the snapshot this part decoded or used is kept, of one version
    the one used last, not one kept from before."""
    first_v2 = payload(records, version=2)
    again_v2 = payload(records, version=2, issued_at=NOW - timedelta(minutes=30))
    peer_v50, peer_v13 = (payload(records, "secom", version=v) for v in (50, 13))
    for data in (first_v2, peer_v50):
        snapshot.decode_payload(data)
    recent.end_pairing(PAIRING, PARTIES)
    for data in (again_v2, peer_v13):
        snapshot.decode_payload(data)
    recent.end_pairing(PAIRING, PARTIES)
    held = {d: recent.get(_digest(d)) is not None for d in (first_v2, again_v2, peer_v50, peer_v13)}
    assert held == {first_v2: False, again_v2: True, peer_v50: False, peer_v13: True}
    # Used (not decoded) in a part, a kept snapshot is kept again; of one version, the last used.
    recent.end_pairing(PAIRING, PARTIES)
    snapshot.decode_payload(first_v2)
    assert recent.get(_digest(again_v2)) is not None  # used after first_v2
    recent.end_pairing(PAIRING, PARTIES)
    assert recent.get(_digest(first_v2)) is None and len(recent) == 2


def test_only_the_pairings_own_parties_are_kept(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    """A payload naming a third party, or another pairing, decoded during this pairing's part
    (the acceptance refuses it after the decode) is not kept."""
    ours = payload(records, version=3)
    stranger = payload(records, "mallory", version=9)
    elsewhere = payload(records, pairing="other", version=4)
    for data in (ours, stranger, elsewhere):
        snapshot.decode_payload(data)
    recent.end_pairing(PAIRING, PARTIES)
    assert [recent.get(_digest(d)) is not None for d in (ours, stranger, elsewhere)] == [
        True,
        False,
        False,
    ]


def test_the_base_offered_is_the_adopted_whole_set_when_the_store_names_it(
    tmp_path: Path,
    records: list[CertRecord],
    recent: RecentSnapshots,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The report check offers the latest peer snapshot kept as the base of the peer's next
    delta: from the whole set adopted when the store's latest digest names it, its blob
    unread; from the store otherwise (nothing adopted, or another snapshot kept since)."""
    v1, v2, v3 = _chain(records)
    with AgentStore(tmp_path / "agent.db") as store:
        check = ReportCheck.__new__(ReportCheck)  # only its store is used here
        check.store = store
        store.keep_peer_snapshot(PAIRING, 2, _peer_env(v2), NOW, v2.full)
        by_store = check.peer_base_digest(PAIRING)
        assert by_store == hashlib.sha256(v2.payload).hexdigest()
        assert check._held_base(PAIRING) is None  # nothing adopted
        recent.adopt_whole(snapshot.decode_payload(v2.payload, base=base_of(v1)))
        monkeypatch.setattr(store, "peer_base", _unread)
        held = check._held_base(PAIRING)
        assert held is not None and held.full == b"" and held.whole is not None
        assert check.peer_base_digest(PAIRING) == by_store
        store.keep_peer_snapshot(PAIRING, 3, _peer_env(v3), NOW, v3.full)
        assert check._held_base(PAIRING) is None  # the store names another one


def _peer_env(built: Built) -> Envelope:
    return Envelope(SNAPSHOT_PAYLOAD_TYPE, built.payload, (Sig("ab" * 32, b"signature"),))


def _unread(pairing: str) -> None:
    raise AssertionError(f"{pairing}: the peer's base read from the store")


class _Server:
    """The exchange's answer to a fetch, as `ExchangeClient.fetch_peer_snapshot` gives it: a
    delta alone when it builds on the base offered, else with its whole set."""

    def __init__(self, chain: dict[int, Built]) -> None:
        self.chain = chain

    def fetch_peer_snapshot(self, pairing: str, version: int, base_sha256: bytes = b"") -> Served:
        built = self.chain[version]
        previous = snapshot.decode_header(built.payload).previous_digest
        env = _peer_env(built)
        full = b"" if base_sha256 == previous else built.full
        return Served(env.payload_type, env.payload, env.signatures, full=full)


class _Decoding:
    """Stands in for the peer keys' verification (tested on its own): decodes what is fetched."""

    def verify(self, trust: object, version: int, fetch: Any, now: object) -> Snapshot:
        return snapshot.decode_envelope(fetch(version))


def test_the_report_check_adopts_the_peers_current_snapshot_and_builds_on_it(
    tmp_path: Path,
    records: list[CertRecord],
    recent: RecentSnapshots,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the current snapshot's whole set is adopted, once verified; the next one fetched
    is then rebuilt on it with the blob of the base unread."""
    v1, v2, v3 = _chain(records)
    pairing = cast(PairingConfig, SimpleNamespace(name=PAIRING))
    with AgentStore(tmp_path / "agent.db") as store:
        check = ReportCheck.__new__(ReportCheck)  # what _fetch_peer uses, and no more
        check.store, check.client = store, cast(ExchangeClient, _Server({2: v2, 3: v3}))
        check.peer_keys, check.clock = cast(PeerKeys, _Decoding()), lambda: NOW
        monkeypatch.setattr(check, "trust", lambda _: None)
        store.keep_peer_snapshot(PAIRING, 1, _peer_env(v1), NOW)
        earlier = check._fetch_peer(pairing, 2, current=False)
        assert recent.whole(earlier.payload_sha256) is None  # an earlier one is only checked
        current = check._fetch_peer(pairing, 2)
        assert recent.whole(current.payload_sha256) is not None
        monkeypatch.setattr(store, "peer_base", _unread)
        assert check._fetch_peer(pairing, 3).header.version == 3


def test_the_full_form_of_a_held_snapshot_is_given_as_decoded_and_not_counted_as_used(
    records: list[CertRecord], recent: RecentSnapshots
) -> None:
    v1, v2, _ = _chain(records)
    first = snapshot.decode_payload(v1.payload)
    second = snapshot.decode_payload(v2.payload, base=base_of(v1))
    assert recent.full_of(first.payload_sha256) is first.full
    assert recent.full_of(second.payload_sha256) == v2.full
    recent.end_pairing(PAIRING, PARTIES)  # the newest of each party stays
    assert recent.full_of(second.payload_sha256) == v2.full
    assert recent.full_of(first.payload_sha256) is None
    assert len(recent) == 1  # asking did not make it one of this part's
    recent.clear()
    assert recent.full_of(second.payload_sha256) is None
