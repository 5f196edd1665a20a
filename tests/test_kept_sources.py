"""The inventory as stored, worked out without reading the sources back (issue 13).

`AgentStore.as_stored` after `replace_inventory` must be exactly what `inventory()` reads back:
the daemon builds its snapshots from it. Since the sources of the records the last collection
listed are kept and updated in memory (agent.store.kept_sources), these tests hold the two
equal over generated sequences of collections: certificates reported by one file or two,
dropped and listed again, in other zones, with another process importing in between.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.errors import StoreError
from invsync.agent.model.record import CertRecord, SourceRef
from invsync.agent.store.agent_store import AgentStore
from tests.test_store import T0, _collection

RECORDS = _collection(T0)
FILES = ("a.pem", "b.pem", "c.pem")
ZONES = (UTC, timezone(timedelta(hours=9)))

# One collection: for each certificate, the files reporting it (none: not listed).
_listing = st.lists(
    st.lists(st.sampled_from(FILES), max_size=2, unique=True),
    min_size=len(RECORDS),
    max_size=len(RECORDS),
)
# A step: a collection, its time's zone, and whether another process imports first.
_steps = st.lists(st.tuples(_listing, st.sampled_from(ZONES), st.booleans()), max_size=5)


def _collected(listing: list[list[str]], at: datetime) -> list[CertRecord]:
    return [
        record.with_view(sources=tuple(SourceRef("pem", f, at, at) for f in files))
        for record, files in zip(RECORDS, listing, strict=True)
        if files
    ]


def _outside_import(path: Path, at: datetime) -> None:
    """`inventory import` in another process: its own connection, another source."""
    with AgentStore(path) as other:
        other.import_records(
            [RECORDS[0].with_view(sources=(SourceRef("csv", "x.csv", at, at),))], at
        )


@settings(max_examples=40, deadline=None)
@given(_steps)
def test_the_inventory_as_stored_is_the_one_read_back(
    steps: list[tuple[list[list[str]], timezone, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as work, AgentStore(Path(work) / "agent.db") as store:
        for day, (listing, zone, imported) in enumerate(steps, start=1):
            at = (T0 + timedelta(days=day)).astimezone(zone)
            if imported:
                _outside_import(store.path, at)
            records = _collected(listing, at)
            store.replace_inventory(records, at)
            assert store.as_stored(records) == store.inventory()


def test_a_steady_collection_reads_only_the_sources_of_new_certificates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[list[str]] = []
    with AgentStore(tmp_path / "agent.db") as store:
        real = store._sources_of

        def counted(shas: Sequence[str] | None) -> dict[str, tuple[SourceRef, ...]]:
            read.append(["every certificate"] if shas is None else list(shas))
            return real(shas)

        monkeypatch.setattr(store, "_sources_of", counted)
        first = _collected([["a.pem"]] * (len(RECORDS) - 1) + [[]], T0)
        store.replace_inventory(first, T0)
        assert read == [["every certificate"]]  # nothing kept yet: the whole table, once
        later = T0 + timedelta(days=1)
        second = _collected([["a.pem"]] * len(RECORDS), later)
        store.replace_inventory(second, later)
        assert read[1] == [RECORDS[-1].sha256]  # only the one new to the inventory
        assert store.as_stored(second) == store.inventory()


def test_an_import_by_this_store_is_read_back_too(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        records = _collected([["a.pem"]] * len(RECORDS), T0)
        store.replace_inventory(records, T0)
        store.import_records(
            [RECORDS[1].with_view(sources=(SourceRef("csv", "x.csv", T0, T0),))], T0
        )
        later = T0 + timedelta(days=1)
        again = _collected([["a.pem"]] * len(RECORDS), later)
        store.replace_inventory(again, later)
        stored = store.as_stored(again)
        assert stored == store.inventory()
        assert [
            s.location for s in stored[[r.sha256 for r in stored].index(RECORDS[1].sha256)].sources
        ] == [
            "a.pem",
            "x.csv",
        ]


def test_an_import_committed_during_a_collection_is_never_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data_version the kept sources hold for is read in the writing transaction, where it
    opens the snapshot the writes build on: an import committed after it makes that collection
    fail (nothing written, nothing kept), and the next one reads every source back."""
    path = tmp_path / "agent.db"
    with AgentStore(path) as store:
        store.replace_inventory(_collected([["a.pem"]] * len(RECORDS), T0), T0)
        real = store._data_version
        later = T0 + timedelta(days=1)

        def then_an_import() -> int:
            version = real()
            monkeypatch.setattr(store, "_data_version", real)
            _outside_import(path, later)
            return version

        monkeypatch.setattr(store, "_data_version", then_an_import)
        records = _collected([["a.pem"]] * len(RECORDS), later)
        with pytest.raises(StoreError, match=f"{re.escape(str(path))}: cannot store the inventory"):
            store.replace_inventory(records, later)
        store.replace_inventory(records, later)
        assert store.as_stored(records) == store.inventory()
        sources = {r.sha256: [s.location for s in r.sources] for r in store.as_stored(records)}
        assert sources[RECORDS[0].sha256] == ["a.pem", "x.csv"]


def test_a_certificate_listed_twice_is_stored_as_read_back(tmp_path: Path) -> None:
    with AgentStore(tmp_path / "agent.db") as store:
        store.replace_inventory(_collected([["a.pem"]] * len(RECORDS), T0), T0)
        later = T0 + timedelta(days=1)
        records = _collected([["a.pem"]] * len(RECORDS), later)
        records.append(records[0].with_view(sources=(SourceRef("pem", "b.pem", later, later),)))
        store.replace_inventory(records, later)
        held = {r.sha256: r.sources for r in store.as_stored(records)}
        assert held == {r.sha256: r.sources for r in store.inventory()}
        assert [s.location for s in held[RECORDS[0].sha256]] == ["a.pem", "b.pem"]
