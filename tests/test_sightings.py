"""A source's sightings written once per read (agent.store.sightings, issue 13).

Until m014 every collection wrote each (certificate, source) row's last sighting. Now a row its
source still lists takes the source's read. What the store reads back must not change: these
tests hold it to a model of the old writes (every row upserted in the records' order, a known
row keeping its first sighting and its place) over generated sequences of collections and
imports, with sources dropped, added back and taken out, several sightings of one source in one
collection, certificates listed twice, other zones and other processes.
"""

from __future__ import annotations

import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.model.record import CertRecord, SourceRef
from invsync.agent.store.agent_store import AgentStore, rfc3339
from invsync.agent.store.kept_sources import KeptSources
from invsync.agent.times import parse_rfc3339
from tests.test_store import T0, _collection

RECORDS = _collection(T0)[:6]
FILES = ("a.pem", "b.pem", "c.pem")
ZONES = (UTC, timezone(timedelta(hours=9)))

RowKey = tuple[str, str, str]


@dataclass
class OldRows:
    """The certificate_sources table as every row written at every read left it."""

    rows: dict[RowKey, list[str]] = field(default_factory=dict)  # first, last
    order: dict[RowKey, int] = field(default_factory=dict)

    def write(self, records: list[CertRecord]) -> None:
        for record in records:
            for ref in record.sources:
                key = (record.sha256, ref.kind, ref.location)
                if key not in self.rows:
                    self.order[key] = len(self.order)
                    self.rows[key] = [rfc3339(ref.first_seen), rfc3339(ref.last_seen)]
                else:
                    self.rows[key][1] = rfc3339(ref.last_seen)

    def sources(self) -> dict[str, tuple[SourceRef, ...]]:
        found: dict[str, list[SourceRef]] = {}
        for key in sorted(self.rows, key=lambda k: (k[0], self.order[k])):
            first, last = self.rows[key]
            found.setdefault(key[0], []).append(
                SourceRef(key[1], key[2], parse_rfc3339(first), parse_rfc3339(last))
            )
        return {sha: tuple(refs) for sha, refs in found.items()}


# A collection: for each certificate, the files listing it (none: not listed), whether it is
# listed twice (the copy naming its files the other way round, first seen an hour before),
# and whether its first file states a sighting a day older (several sightings of one source
# in one collection: that source is written row by row).
_entry = st.tuples(
    st.lists(st.sampled_from(FILES), max_size=2, unique=True), st.booleans(), st.booleans()
)
_listing = st.lists(_entry, min_size=len(RECORDS), max_size=len(RECORDS))
_step = st.one_of(
    st.tuples(st.just("collect"), _listing, st.sampled_from(ZONES)),
    st.tuples(st.just("import"), st.sampled_from((*FILES, "x.csv")), st.sampled_from(ZONES)),
    st.tuples(st.just("import elsewhere"), st.sampled_from(FILES), st.sampled_from(ZONES)),
)


def _collected(listing: list[tuple[list[str], bool, bool]], at: datetime) -> list[CertRecord]:
    records = []
    for record, (files, twice, older) in zip(RECORDS, listing, strict=True):
        refs = [SourceRef("pem", f, at, at) for f in files]
        if refs and older:
            refs[0] = SourceRef("pem", files[0], at - timedelta(days=2), at - timedelta(days=1))
        copies = [record.with_view(sources=tuple(refs))]
        if twice:
            earlier = at - timedelta(hours=1)
            again = [SourceRef(r.kind, r.location, earlier, r.last_seen) for r in refs[::-1]]
            copies.append(record.with_view(sources=tuple(again)))
        records.extend(copies if files else [])
    return records


def _imported(file: str, at: datetime) -> list[CertRecord]:
    return [RECORDS[0].with_view(sources=(SourceRef("pem", file, at, at),))]


def _check(store: AgentStore, old: OldRows) -> None:
    """Every certificate's sources, present or not, and the present ones' as listed."""
    expected = old.sources()
    for sha, sources in expected.items():
        record = store.record(sha)
        assert record is not None and record.sources == sources
    assert all(record.sources == expected[record.sha256] for record in store.inventory())


def _run(path: Path, steps: list[tuple[str, object, timezone]], keeps: bool) -> None:
    old = OldRows()
    with AgentStore(path, keeps=keeps) as store:
        for index, (kind, what, zone) in enumerate(steps, 1):
            at = (T0 + timedelta(minutes=index)).astimezone(zone)
            if kind == "collect":
                records = _collected(what, at)  # type: ignore[arg-type]
                if not records:
                    continue  # a collection lists something, or is an error before the store
                store.replace_inventory(records, at)
                old.write(records)
                expected = old.sources()
                assert all(r.sources == expected[r.sha256] for r in store.as_stored(records))
            elif kind == "import":
                store.import_records(_imported(str(what), at), at)
                old.write(_imported(str(what), at))
            else:
                with AgentStore(path) as other:
                    other.import_records(_imported(str(what), at), at)
                old.write(_imported(str(what), at))
            _check(store, old)
    with AgentStore(path, create=False) as reopened:
        _check(reopened, old)


@settings(max_examples=80, deadline=None)
@given(st.lists(_step, max_size=8), st.booleans())
def test_sightings_read_back_as_writing_every_row_gave_them(
    steps: list[tuple[str, object, timezone]], keeps: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        _run(Path(tmp) / "agent.db", steps, keeps)


def test_a_failed_collection_leaves_the_listings_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection whose transaction fails after its sightings were written leaves nothing
    of them, in the database or in what the store keeps for the next one."""
    listing = [(["a.pem"], False, False)] * len(RECORDS)
    fewer = [(["a.pem"], False, False)] * 3 + [([], False, False)] * (len(RECORDS) - 3)
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collected(listing, T0), T0)
        with monkeypatch.context() as patched:
            patched.setattr(KeptSources, "work_out", _fail)
            with pytest.raises(RuntimeError, match="after the sightings"):
                store.replace_inventory(_collected(fewer, t1), t1)
        store.replace_inventory(_collected(fewer, t2), t2)
        stored = [store.record(r.sha256) for r in RECORDS]
    seen = [[ref.last_seen for ref in r.sources] if r else None for r in stored]
    assert seen == [[t2]] * 3 + [[T0]] * (len(RECORDS) - 3)


def _fail(*_: object) -> None:
    raise RuntimeError("failed after the sightings were written")


def test_a_steady_collection_writes_the_read_alone(tmp_path: Path) -> None:
    """The rows of a source still listing its certificates are not written again."""
    listing = [(["a.pem"], False, False)] * len(RECORDS)
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collected(listing, T0), T0)
        before = store.db.conn.total_changes
        later = T0 + timedelta(hours=1)
        store.replace_inventory(_collected(listing, later), later)
        assert store.db.conn.total_changes - before == 1
        assert {ref.last_seen for r in store.inventory() for ref in r.sources} == {later}
    with sqlite3.connect(tmp_path / "agent.db") as conn:
        assert conn.execute("SELECT DISTINCT last_seen FROM certificate_sources").fetchall() == [
            (rfc3339(T0),)
        ]
        assert conn.execute("SELECT kind, location, read_at FROM source_reads").fetchall() == [
            ("pem", "a.pem", rfc3339(later))
        ]


def test_a_source_taken_out_keeps_its_last_read(tmp_path: Path) -> None:
    """A source no collection reads any more: its rows keep the last read that listed them."""
    first = [(["a.pem", "b.pem"], False, False)] * len(RECORDS)
    then = [(["b.pem"], False, False)] * len(RECORDS)
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collected(first, T0), T0)
        store.replace_inventory(_collected(first, t1), t1)
        store.replace_inventory(_collected(then, t2), t2)
        refs = {(ref.location, ref.last_seen) for r in store.inventory() for ref in r.sources}
    assert refs == {("a.pem", t1), ("b.pem", t2)}
    with sqlite3.connect(tmp_path / "agent.db") as conn:
        assert conn.execute("SELECT location FROM source_reads").fetchall() == [("b.pem",)]
