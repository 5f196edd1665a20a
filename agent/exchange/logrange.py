"""One answer of the log's GetLogEntries: a leaf hash for every index it covers, and the entry
bytes of the caller's own pairings only (empty bytes where withheld).

Every member of the federation needs the whole tree's hashes to check proofs, but another
pairing's snapshots and reports stay between that pairing's parties: the server shows an entry
only when the caller may read it (`ServerStore.shown_entries`; `LogRange.of` for the evidence
export, which shows every entry). A reader calls `check`
before it parses anything: each entry it got must hash to the leaf hash beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import tlog
from invsync.v1 import invsync_pb2 as pb


class BadLogRange(InvsyncError):
    """An answer of GetLogEntries does not hold together: counts or leaf hashes differ."""

    hint = (
        "The server answered a log request with entries that do not match their leaf hashes; "
        "keep the answer as evidence and tell the exchange operator."
    )


@dataclass(frozen=True)
class LogRange:
    """The entries `start` <= index < `start + len(self)`; entries[i] is b"" when withheld."""

    start: int
    leaf_hashes: tuple[bytes, ...]
    entries: tuple[bytes, ...]

    def __len__(self) -> int:
        return len(self.leaf_hashes)

    @classmethod
    def of(cls, start: int, leaves: Sequence[bytes], shown: Callable[[bytes], bool]) -> LogRange:
        """The stored `leaves` from `start`, each entry kept only where `shown(leaf)`."""
        hashes = tuple(tlog.leaf_hash(leaf) for leaf in leaves)
        return cls(start, hashes, tuple(leaf if shown(leaf) else b"" for leaf in leaves))

    def to_pb(self) -> pb.LogEntries:
        return pb.LogEntries(entries=self.entries, leaf_hashes=self.leaf_hashes)

    @classmethod
    def from_pb(cls, start: int, msg: pb.LogEntries) -> LogRange:
        """The answer to a request from `start`. An older server sends every entry and no
        hashes: the hashes are then those of the entries."""
        entries = tuple(msg.entries)
        if not msg.leaf_hashes:
            return cls(start, tuple(tlog.leaf_hash(e) for e in entries), entries)
        return cls(start, tuple(msg.leaf_hashes), entries)

    def check(self) -> None:
        """BadLogRange unless every entry served hashes to its leaf hash."""
        if len(self.entries) != len(self.leaf_hashes):
            raise BadLogRange(
                f"log entries from {self.start}: {len(self.entries)} entries but "
                f"{len(self.leaf_hashes)} leaf hashes"
            )
        for offset, (entry, leaf) in enumerate(zip(self.entries, self.leaf_hashes, strict=True)):
            if entry and tlog.leaf_hash(entry) != leaf:
                raise BadLogRange(
                    f"log entry {self.start + offset}: its bytes do not hash to its leaf hash"
                )
