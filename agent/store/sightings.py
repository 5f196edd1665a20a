"""A collection's sightings written once per source read, not once per certificate (issue 13).

Every collection sights each certificate its sources list: a (certificate, source) row's
`last_seen` is the last collection whose source listed it. Writing that into every row rewrote
100,000 rows a cycle at 100,000 certificates (about 0.5 s and 30 MB of write-ahead log), to say
one thing: the source was read again and still lists them. So a row whose source still lists
its certificate is marked `listed`, and its last sighting is that source's last read, kept once
per source in `source_reads`. A row is written only when its certificate starts or stops being
listed by the source: one that stops takes the source's read before this one as its
`last_seen`, which is what writing every row at every read gave it. A source no collection reads
any more (taken out of the configuration) has its rows closed the same way. Read back, a listed
row's last sighting is its source's read (`SOURCES_READ`).

A source whose records in one collection state different last sightings (records assembled from
stored ones, or built by hand) is written row by row, as before, not listed; so is every row an
import writes, which also ends a listing by that source until a collection lists it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils

from invsync.agent.model.record import CertRecord, SourceRef

SourceKey = tuple[str, str]  # (kind, location)
# What each source lists now: the SHA-256 of each certificate whose row is `listed`.
Listed = dict[SourceKey, frozenset[str]]

# Every source row, a listed one with its source's last read as its last sighting.
SOURCES_READ = (
    "SELECT cs.sha256, cs.kind, cs.location, cs.first_seen,"
    " CASE WHEN cs.listed = 1 AND sr.read_at IS NOT NULL THEN sr.read_at ELSE cs.last_seen END"
    " FROM certificate_sources AS cs"
    " LEFT JOIN source_reads AS sr ON sr.kind = cs.kind AND sr.location = cs.location"
)
# A row and whether its source still lists it: a known source keeps its first_seen. An import
# writes each row with its own sightings, not listed.
UPSERT_ROW = (
    "INSERT INTO certificate_sources (sha256, kind, location, first_seen, last_seen, listed)"
    " VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (sha256, kind, location) DO UPDATE SET last_seen = excluded.last_seen,"
    " listed = excluded.listed"
)
_UNLIST = (
    "UPDATE certificate_sources SET listed = 0, last_seen = COALESCE(?, last_seen)"
    " WHERE sha256 = ? AND kind = ? AND location = ?"
)
_UNLIST_SOURCE = (
    "UPDATE certificate_sources SET listed = 0, last_seen = COALESCE(?, last_seen)"
    " WHERE kind = ? AND location = ? AND listed = 1"
)
_READ = (
    "INSERT INTO source_reads (kind, location, read_at) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, location) DO UPDATE SET read_at = excluded.read_at"
)

Stamped = tuple[SourceKey, str, str]  # a source as stored: (kind, location), first, last seen


@dataclass(frozen=True)
class Sightings:
    """One collection's sightings, worked out (and their times checked) before any write."""

    records: Sequence[CertRecord]
    # Each distinct sources tuple of the records (by id; the records hold them alive), stamped.
    stamped: dict[int, list[Stamped]]
    # Each source read at one time: that time, and the certificates it lists.
    reads: dict[SourceKey, tuple[str, frozenset[str]]]
    # The sources read at several times at once: written row by row, not listed.
    several: frozenset[SourceKey]


def sightings_of(records: Sequence[CertRecord], stamp: Callable[[datetime], str]) -> Sightings:
    """The sightings `records` state, each time as `stamp` spells it (which refuses a naive
    one). A collection's records share a few sources tuples: each distinct one is worked out
    once."""
    groups: dict[int, list[str]] = {}
    stamped: dict[int, list[Stamped]] = {}
    for record in records:
        shas = groups.get(id(record.sources))
        if shas is None:
            shas = groups[id(record.sources)] = []
            stamped[id(record.sources)] = [_stamped(ref, stamp) for ref in record.sources]
        shas.append(record.info.sha256)
    times: dict[SourceKey, set[str]] = {}
    listed: dict[SourceKey, set[str]] = {}
    for group, shas in groups.items():
        for key, _, last in stamped[group]:
            times.setdefault(key, set()).add(last)
            listed.setdefault(key, set()).update(shas)
    reads = {
        key: (next(iter(seen)), frozenset(listed[key]))
        for key, seen in times.items()
        if len(seen) == 1
    }
    several = frozenset(times.keys() - reads.keys())
    return Sightings(records, stamped, reads, several)


def listed_in(db: sqlite_utils.Database) -> Listed:
    """What each source lists as stored."""
    found: dict[SourceKey, set[str]] = {}
    rows = db.execute("SELECT kind, location, sha256 FROM certificate_sources WHERE listed = 1")
    for kind, location, sha in rows.fetchall():
        found.setdefault((kind, location), set()).add(sha)
    return {key: frozenset(shas) for key, shas in found.items()}


def write(db: sqlite_utils.Database, sightings: Sightings, before: Listed | None) -> Listed:
    """Write `sightings` in the caller's transaction: the listings that started and ended, each
    source's read, and the rows of sources read at several times; what each source lists
    afterwards. `before`: what each source listed as stored, if known (else read here)."""
    if before is None:
        before = listed_in(db)
    read_at = dict(_source_reads(db))
    conn = db.conn
    for key in (before.keys() | read_at.keys()) - sightings.reads.keys():
        conn.execute(_UNLIST_SOURCE, [read_at.get(key), *key])
        conn.execute("DELETE FROM source_reads WHERE kind = ? AND location = ?", list(key))
    started = {}
    for key, (_, listed) in sightings.reads.items():
        held = before.get(key, frozenset())
        last = read_at.get(key)
        conn.executemany(_UNLIST, [(last, sha, *key) for sha in held - listed])
        started[key] = listed - held
    conn.executemany(UPSERT_ROW, _rows(sightings, started))
    for key, (at, _) in sightings.reads.items():
        conn.execute(_READ, [*key, at])
    return {key: listed for key, (_, listed) in sightings.reads.items()}


def _rows(sightings: Sightings, started: Mapping[SourceKey, frozenset[str]]) -> Iterator[Row]:
    """The rows to write, in the order of the records and of their sources, as writing every
    row did: a source new to a certificate comes after its others (by rowid). Made as they
    are written: at a first collection, every certificate's."""
    new = frozenset().union(*started.values())
    several = {
        group
        for group, refs in sightings.stamped.items()
        if any(key in sightings.several for key, _, _ in refs)
    }
    for record in sightings.records:
        sha = record.info.sha256
        if sha not in new and id(record.sources) not in several:
            continue
        for key, first, last in sightings.stamped[id(record.sources)]:
            if key in sightings.several:
                yield (sha, *key, first, last, 0)
            elif sha in started[key]:  # twice for a certificate listed twice: the first
                yield (sha, *key, first, last, 1)  # keeps its first sighting


Row = tuple[str, str, str, str, str, int]


def _stamped(ref: SourceRef, stamp: Callable[[datetime], str]) -> Stamped:
    return (ref.kind, ref.location), stamp(ref.first_seen), stamp(ref.last_seen)


def _source_reads(db: sqlite_utils.Database) -> Iterable[tuple[SourceKey, str]]:
    for kind, location, at in db.execute("SELECT kind, location, read_at FROM source_reads"):
        yield (kind, location), at
