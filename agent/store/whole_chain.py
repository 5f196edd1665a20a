"""A delta's whole set stored once every WHOLE_EVERY versions, rebuilt from its chain between
(issue 13).

Each kept snapshot, ours or the peer's, needs its whole set: the next delta builds on it, the
report check compares the one before. Written with every delta it cost a steady daemon about
1 s a cycle at 100,000 certificates (60 MB into SQLite for each side, and 60 MB freed when the
older one was pruned), to be read back only by a process that does not hold it already: a
restarted daemon, a one-shot one, `status`. So a row stores its whole set (`full`) only when
its chain of deltas since the last stored one would reach WHOLE_EVERY, and otherwise its
`chain` length, and a reader rebuilds it: the stored one, then each delta of the chain applied
forward (agent.exchange.delta.rebuild_chain), the same bytes as written. The exchange server
does the same with its own cadence (server.snapshot_sets).

A row's `chain`:
- 0: its whole set is in the row: `full`, or the payload of a full snapshot;
- k > 0: a delta stored without it, on the row whose payload its previous_digest names, whose
  own chain is k - 1;
- NULL: not known here (a delta restored from the log without its set, or one whose chain was
  pruned), as `full` NULL meant before.

Every payload in these tables was verified before it was kept. A rebuilt set is checked before
it is given: each link's payload against the digest it is kept under, and the result against
the signed header's records_root (a draft builds its next delta on it without decoding it). A
damaged chain is a StoreError, never a wrong set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import sqlite_utils

from invsync.agent.errors import InvsyncError, StoreError
from invsync.agent.exchange import delta

# At 100,000 certificates: one 60 MB write in eight cycles, and a reader applies at most seven
# deltas of 100 records to the stored set (a few ms each beside the 0.3 s of reading it).
WHOLE_EVERY = 8


def placement(
    db: sqlite_utils.Database, table: str, pairing: str, payload: bytes, full: bytes | None
) -> tuple[bytes | None, int | None]:
    """The (`full`, `chain`) columns of a new row of `table` for a verified `payload`, whose
    whole set is `full` when a delta (None or empty: not known here). A payload whose header
    does not read is stored as given: nothing chains from it."""
    try:
        header = delta.accepted_header(payload)
    except InvsyncError:
        return full or None, 0 if full else None
    if not header.delta:
        return None, 0
    if not full:
        return None, None
    base = _base(db, table, pairing, header.previous_digest, "chain")
    if base is None or base[0] is None or base[0] + 1 >= WHOLE_EVERY:
        return full, 0
    return None, int(base[0]) + 1


def rebuilt(db: sqlite_utils.Database, table: str, pairing: str, payload: bytes) -> bytes | None:
    """The whole set of the delta `payload`, kept in `table` with a chain (see the module
    docstring); None when a link of its chain is no longer kept. StoreError when the kept
    payloads do not apply: the database is damaged."""
    try:
        return _rebuilt(db, table, pairing, payload)
    except StoreError:
        raise
    except InvsyncError as e:
        raise _damaged(table, pairing, str(e)) from e


def _rebuilt(db: sqlite_utils.Database, table: str, pairing: str, payload: bytes) -> bytes | None:
    deltas = [delta.read_parts(payload, "kept payload")]
    for _ in range(_LONGEST):
        wanted = deltas[-1].header.previous_digest.hex()
        row = _base(db, table, pairing, deltas[-1].header.previous_digest, "payload, full, chain")
        if row is None or row[2] is None:
            return None
        base_payload = bytes(row[0])
        if hashlib.sha256(base_payload).hexdigest() != wanted:
            raise _damaged(table, pairing, f"the payload kept as {wanted[:16]} has other bytes")
        if row[1] is not None or row[2] == 0:
            base = bytes(row[1]) if row[1] is not None else base_payload
            # Checked against the signed header: a caller may build on it without decoding it.
            return delta.rebuild_chain(base, deltas[::-1], check_root=True)
        deltas.append(delta.read_parts(base_payload, "kept payload"))
    raise _damaged(table, pairing, f"a chain longer than {_LONGEST} deltas")


def chain_root(db: sqlite_utils.Database, table: str, pairing: str, version: int) -> int | None:
    """The version whose stored whole set `version`'s is rebuilt from (itself when stored, or
    a full snapshot); None when it has none (chain NULL) or is not kept."""
    by_version = f"SELECT {{}} FROM {table} {{}} WHERE pairing = ? AND version = ?"
    # From the index: in the row, `chain` lies past the blobs.
    meta = f"INDEXED BY {table}_meta"
    row = db.execute(by_version.format("version, chain", meta), [pairing, version]).fetchone()
    for _ in range(_LONGEST):
        if row is None or row[1] is None:
            return None
        if row[1] == 0:
            return int(row[0])
        # A delta's payload is small; a stored set's (chain 0) is never read here.
        (payload,) = db.execute(by_version.format("payload", ""), [pairing, row[0]]).fetchone()
        previous = delta.accepted_header(bytes(payload)).previous_digest
        row = _base(db, table, pairing, previous, "version, chain")
    return None


def _base(
    db: sqlite_utils.Database, table: str, pairing: str, previous_digest: bytes, columns: str
) -> Any:
    """`columns` of the kept row a delta builds on: the one its previous_digest names."""
    return db.execute(
        f"SELECT {columns} FROM {table} WHERE pairing = ? AND payload_sha256 = ?",
        [pairing, previous_digest.hex()],
    ).fetchone()


def _damaged(table: str, pairing: str, why: str) -> StoreError:
    return StoreError(
        f"{table} of {pairing!r}: the kept snapshots do not rebuild a whole set ({why}): "
        "the database is damaged; restore it from a backup"
    )


# A chain is shorter than WHOLE_EVERY; a longer walk is a damaged table, not a long chain.
_LONGEST = WHOLE_EVERY * 4


HeldWhole = Callable[[str], bytes | None]
"""A process's own copy of a whole set, by its payload's SHA-256 (hex): read from what it holds
instead of rebuilt from the database (a daemon's last build and the peer's current set)."""
