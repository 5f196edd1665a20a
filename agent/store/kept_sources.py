"""Each present record's sources as stored, kept from the last collection (issue 13).

After a collection is stored, the cycle goes on with the inventory as stored (`as_stored`),
whose sources are every source that ever reported each record, with the first and last
sighting the store holds. Reading them back was 100,000 rows a cycle, to learn what the store
already held plus this collection's sightings. So the sources as stored after one collection
are kept, and the next one's are worked out from them the way the store's upsert writes them:
a source reporting the record again keeps its first sighting and takes the new last one, a
new source is added after the others. Kept only while the database is written by this
connection alone: SQLite's `data_version` moves when another one commits (an `inventory import`
beside a daemon), and then everything is read from the database again, as it is for a record
the last collection did not list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from invsync.agent.model.record import CertRecord, SourceRef
from invsync.agent.times import parse_rfc3339, rfc3339

Sources = tuple[SourceRef, ...]
# The sources of these certificates, or of every one (None).
ReadSources = Callable[[Sequence[str] | None], dict[str, Sources]]


class KeptSources:
    """The sources `as_stored` gives each record the last collection listed, and the
    `data_version` they hold for (None: none kept)."""

    def __init__(self) -> None:
        self._by_sha: dict[str, Sources] | None = None
        self._version: int | None = None
        self._for: Sequence[CertRecord] | None = None

    def before_write(self, data_version: int) -> dict[str, Sources] | None:
        """What the store held before this collection's write, if nothing else wrote since
        the last one was kept (`data_version` as the writing transaction reads it first).
        Nothing is kept from here on until `keep`: a failed write keeps nothing."""
        by_sha, self._by_sha, self._for = self._by_sha, None, None
        return by_sha if data_version == self._version else None

    @staticmethod
    def work_out(
        records: Sequence[CertRecord],
        shas: Sequence[str],
        before: dict[str, Sources] | None,
        read: ReadSources,
    ) -> dict[str, Sources]:
        """`records`' sources as the store holds them once their sightings are written (called
        in the writing transaction): from `before`, reading only records it does not hold.
        `shas`: each record's SHA-256, as the caller read them already."""
        missing = [sha for sha in shas if before is None or sha not in before]
        # Many to read (every one, the first time): one pass over the table costs less.
        known = read(None if 4 * len(missing) > len(records) else missing) if missing else {}
        after: dict[tuple[int, int], Sources] = {}
        by_sha = {}
        for record, sha in zip(records, shas, strict=True):
            held = before.get(sha) if before is not None else None
            if held is None:
                by_sha[sha] = known.get(sha, ())
                continue
            key = (id(held), id(record.sources))  # both alive through this loop
            updated = after.get(key)
            if updated is None:
                updated = after[key] = _sighted(held, record.sources)
            by_sha[sha] = updated
        return by_sha

    def keep(self, records: Sequence[CertRecord], by_sha: dict[str, Sources], version: int) -> None:
        """Keep what `work_out` gave, once the write committed, for `as_stored` and the next
        collection."""
        self._by_sha, self._for, self._version = by_sha, records, version

    def for_records(self, records: Sequence[CertRecord]) -> dict[str, Sources] | None:
        """The sources kept for `records` by the last `keep`, once; else None."""
        by_sha = self._by_sha if self._for is records else None
        self._for = None  # the collection's records are not held beyond their cycle
        return by_sha

    def forget(self) -> None:
        """Keep nothing: the sources were written another way (an import)."""
        self._by_sha, self._for, self._version = None, None, None


def _sighted(held: Sources, seen: Sources) -> Sources:
    """`held` once the store upserted `seen`: a known source keeps its place and first
    sighting and takes the last one seen; a new one comes after, as its row does."""
    out = list(held)
    for ref in seen:
        for index, known in enumerate(out):
            if (known.kind, known.location) == (ref.kind, ref.location):
                out[index] = _as_read(known.kind, known.location, known.first_seen, ref.last_seen)
                break
        else:
            out.append(_as_read(ref.kind, ref.location, ref.first_seen, ref.last_seen))
    return tuple(out)


def _as_read(kind: str, location: str, first: datetime, last: datetime) -> SourceRef:
    """The source as the store reads it back: each time through its stored spelling."""
    return SourceRef(kind, location, parse_rfc3339(rfc3339(first)), parse_rfc3339(rfc3339(last)))
