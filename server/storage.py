"""What the exchange keeps, as one interface, and how the transparency log is written over it.

`ExchangeStorage` is every method `Exchange`, `ReportMaker`, the schedule and the servicer use;
`server.store.ServerStore` (SQLite) implements it. The log (DESIGN §6a) is an RFC 6962 tree over
the exact bytes of serialized `invsync.v1.LogEntry` messages: `LogWriter` appends an entry and
signs and stores the checkpoint of the tree that now ends with it, inside the caller's
`transaction()`, so the log never records what was not committed, nor misses what was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from invsync.agent.exchange import tlog
from invsync.agent.exchange.acceptance import LastAccepted
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import SigningKey

# The entries' byte form is the agents' too (they check their own entries): made there, once.
from invsync.agent.exchange.log_entry import canonical_envelope as canonical_envelope
from invsync.agent.exchange.log_entry import log_entry as log_entry
from invsync.v1 import invsync_pb2 as pb


@dataclass(frozen=True)
class StoredReport:
    report_id: str
    pairing: str
    created_at: datetime
    envelope: Envelope


@dataclass(frozen=True)
class LogBudget:
    """How much one answer of log entries may hold: `served`, the bytes it carries (an entry
    withheld from the caller costs its 32-byte hash), and `read`, the bytes read to make it (a
    withheld snapshot entry is read to learn whose it is)."""

    served: int
    read: int


class ExchangeStorage(Protocol):
    """Accepted snapshots (exact bytes), receipts, reports, signatures, rotations and the log.

    Writers that must commit together run inside one `transaction()`; outside one, each write
    commits on its own. Implementations are safe to call from several threads.
    """

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager[None]:
        """Everything done inside commits together, or not at all; other callers wait."""
        ...

    # Snapshots, receipts and key rotations

    def last_accepted(self, party: str, pairing: str) -> LastAccepted | None: ...

    def commit_snapshot(
        self,
        party: str,
        pairing: str,
        version: int,
        env: Envelope,
        receipt: bytes,
        rotation: Rotation | None = None,
        full: bytes | None = None,
    ) -> None: ...

    def snapshot(self, party: str, pairing: str, version: int = 0) -> Envelope | None:
        """A given version, or with 0 the latest; None if there is none."""
        ...

    def snapshot_set(self, party: str, pairing: str, version: int) -> bytes | None:
        """The kept whole set of a delta snapshot (server.snapshot_sets), or None."""
        ...

    def version_before(self, party: str, pairing: str, version: int) -> int | None:
        """The party's accepted version of the pairing just below `version`, or None."""
        ...

    def receipt(self, party: str, pairing: str, version: int) -> bytes | None: ...

    def rotations(self, party: str) -> list[Rotation]: ...

    def supersede(self, party: str, pairing: str, above: int, log_index: int) -> list[int]:
        """Set aside the party's snapshots and rotations in the pairing with a version above
        `above` (a chain reset logged at `log_index`); the versions set aside, ascending."""
        ...

    # Reports and their signatures

    def save_report(self, report_id: str, pairing: str, body: bytes, server_sig: Sig) -> bool:
        """True if the report is new; a report already stored is kept as it is."""
        ...

    def add_report_signature(self, report_id: str, sig: Sig) -> bool:
        """True if the signature is new or replaces other bytes by the same key."""
        ...

    def report(self, pairing: str, report_id: str = "") -> StoredReport | None:
        """A given report of the pairing, or with "" its latest; None if there is none."""
        ...

    # The transparency log

    def append_log_entry(self, leaf: bytes) -> int:
        """Store `leaf` as the log's next entry; its index."""
        ...

    def log_size(self) -> int: ...

    def log_entries(self, start: int, end: int, max_bytes: int) -> list[bytes]:
        """The leaves start <= index < end as stored, stopping before `max_bytes` in all
        (but at least one leaf when the range has any)."""
        ...

    def small_log_entries(self, max_length: int) -> list[tuple[int, bytes]]:
        """(index, leaf) of every leaf of at most `max_length` bytes, in log order: the
        server's key announcements are among them, read without reading the snapshots."""
        ...

    def shown_entries(
        self, start: int, end: int, budget: LogBudget, shown: Callable[[bytes], bool]
    ) -> tuple[list[bytes], list[bytes]]:
        """The leaf hashes of start <= index < end, and the leaves `shown` keeps (b"" for the
        rest), stopping before `budget` (but at least one entry when the range has any)."""
        ...

    def leaf_hashes(self, size: int) -> list[bytes]:
        """The RFC 6962 leaf hashes of the first `size` entries, in order."""
        ...

    def save_checkpoint(self, size: int, note: bytes) -> None: ...

    def checkpoint(self, size: int = 0) -> bytes | None:
        """The signed note of the tree of `size` entries, or with 0 the latest; None if none."""
        ...


@dataclass(frozen=True)
class Logged:
    """Where an entry went: its index, and the signed checkpoint of the tree ending with it."""

    index: int
    checkpoint: bytes


@dataclass(frozen=True)
class LogWriter:
    """Appends entries and signs checkpoints as the server: origin and key name are its name."""

    name: str
    key: SigningKey

    def append(self, store: ExchangeStorage, entry: pb.LogEntry, *also: SigningKey) -> Logged:
        """Append `entry` (serialized here, once) and store the checkpoint that includes it,
        signed by the writer's key and each of `also`. Call it inside `store.transaction()`,
        with what the entry records."""
        index = store.append_log_entry(entry.SerializeToString())
        note = self.sign(index + 1, store.leaf_hashes(index + 1), *also)
        store.save_checkpoint(index + 1, note)
        return Logged(index, note)

    def sign(self, size: int, leaves: Sequence[bytes], *also: SigningKey) -> bytes:
        checkpoint = Checkpoint(self.name, size, tlog.root(leaves))
        return sign_checkpoint(checkpoint, self.name, self.key, *also)
