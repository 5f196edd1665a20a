"""The exchange service's domain logic, free of gRPC: accept, serve and sign.

`service.py` adapts it to gRPC. Every method takes the caller's party as established from the
TLS certificate by `auth.py`; none trusts a party named in a request.

Every accepted or issued envelope is appended to the transparency log (DESIGN §6a, the entry
format in invsync.proto's LogEntry) in the transaction that commits it, and each append signs a
new checkpoint; the receipt names the snapshot's entry and a checkpoint that includes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial

from google.protobuf.message import DecodeError

from invsync.agent.errors import StoreError, bounded
from invsync.agent.exchange import delta, tlog
from invsync.agent.exchange.acceptance import AcceptancePolicy, LastAccepted, accept
from invsync.agent.exchange.checkpoint import claimed_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.receipt import receipt_for, sign_receipt
from invsync.agent.exchange.rejections import (
    AccessDenied,
    BadLogRequest,
    BadReportSignature,
    NotFound,
    SnapshotRejected,
    StreamTooLarge,
)
from invsync.agent.exchange.snapshot import from_chunks
from invsync.agent.gc_pause import collector_paused
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, ReportBody
from invsync.server import metrics
from invsync.server.reconciling import ReportMaker, party_keyring
from invsync.server.report_news import ReportNews, ReportWait
from invsync.server.server_keys import check_key_in_force
from invsync.server.snapshot_sets import whole_set
from invsync.server.storage import (
    ExchangeStorage,
    LogBudget,
    Logged,
    LogWriter,
    StoredReport,
    log_entry,
)
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.server")
# The most entries one GetLogEntries request may ask for; a larger range is refused, so a client
# learns the cap instead of mistaking a short answer for the log's end.
MAX_LOG_ENTRIES = 256
# Entries past this many bytes served are left to the next request (at least one is answered),
# so a range of large snapshots cannot make one answer of gigabytes.
MAX_LOG_ANSWER_BYTES = 3 << 20
# An answer counts what it serves: an entry withheld from the caller (another party's snapshot:
# a full one of 100,000 certificates is an 80 MB entry) costs its hash, and at most this much
# is read to learn whose each is (two entries of the largest snapshot a server takes by
# default; an entry that would pass it is not read, unless it is the answer's first).
LOG_BUDGET = LogBudget(served=MAX_LOG_ANSWER_BYTES, read=768 << 20)


class Exchange:
    def __init__(
        self,
        *,
        name: str,
        store: ExchangeStorage,
        policy: AcceptancePolicy,
        signing_key: SigningKey,
        reports: ReportMaker,
        max_snapshot_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reconcile: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.policy = policy
        self.key = signing_key
        self.reports = reports
        self.max_snapshot_bytes = max_snapshot_bytes
        self.clock = clock
        # How an accepted snapshot's pairing gets its report: the daemon hands it to a worker
        # (server.report_worker), off the push and its lock; by default it is made at once.
        self.reconcile = reconcile or self._reconcile
        self.log = LogWriter(name, signing_key)
        # Never sign with a key the log retired (`invsync server keys rotate`).
        check_key_in_force(store, name, signing_key, "server.signing_key")
        # Calls waiting for a report are woken when one is stored (by the report maker, on
        # whichever thread makes it) or signed.
        self.news = ReportNews()
        reports.on_saved = self.news.changed
        # One writer at a time: acceptance reads the last version, then commits the next.
        self._lock = threading.Lock()

    def set_policy(self, policy: AcceptancePolicy) -> None:
        """A reloaded configuration's parties and pairings (server.live_config), for the calls
        and reports started from now on."""
        self.policy = policy
        self.reports.set_policy(policy)

    def push(self, tls_party: str | None, chunks: Iterable[pb.SnapshotChunk]) -> bytes:
        """Accept a streamed snapshot; returns the serialized signed receipt, after commit."""
        with self.news.push_under_way() as under_way:  # what waiting calls ask (report_news)
            return self._push(tls_party, chunks, under_way)

    def _push(
        self,
        tls_party: str | None,
        chunks: Iterable[pb.SnapshotChunk],
        under_way: Callable[[str, str], None],
    ) -> bytes:
        verified: list[str] = []  # the pairing of a verified header, once there is one
        try:
            env = from_chunks(chunks, self.max_snapshot_bytes)
            # Paused once the bytes are in and the lock is held: a slow sender or a queue of
            # pushes must not keep the collector off for the whole server (agent.gc_pause).
            with self._lock, collector_paused():
                receipt = self._accept(tls_party, env, verified, under_way)
        except SnapshotRejected as e:
            party = tls_party if tls_party in self.policy.parties else metrics.UNKNOWN
            pairing = verified[0] if verified else metrics.UNKNOWN
            metrics.SNAPSHOTS_RECEIVED.labels(party, pairing, metrics.REJECTED, e.rule).inc()
            raise
        return receipt

    def _accept(
        self,
        tls_party: str | None,
        env: Envelope,
        verified: list[str],
        under_way: Callable[[str, str], None],
    ) -> bytes:
        def last(party: str, pairing: str) -> LastAccepted | None:
            # `accept` asks only once the signature verified and the header's party, pairing
            # and role passed: from here on a rejection may be labelled with its pairing, and
            # the push holds back the peer's wait for a report it is about to supersede.
            verified.append(pairing)
            under_way(party, pairing)
            return self.store.last_accepted(party, pairing)

        accepted = accept(
            env,
            tls_party=tls_party,
            policy=self.policy,
            last=last,
            now=self.clock(),
            rotations=self.store.rotations,
            bases=lambda party, pairing, version: whole_set(self.store, party, pairing, version),
        )
        header = accepted.snapshot.header
        if accepted.duplicate:
            receipt = self.store.receipt(header.party, header.pairing, header.version)
            assert receipt is not None  # a duplicate was accepted before, with its receipt
            metrics.SNAPSHOTS_RECEIVED.labels(
                header.party, header.pairing, metrics.ACCEPTED, "duplicate"
            ).inc()
            return receipt
        full = accepted.snapshot.full if header.delta else None
        if full is not None and len(full) > self.max_snapshot_bytes:
            # Deltas under the limit could grow a whole set past it, which no fetch of it
            # without its base could then carry.
            raise StreamTooLarge(
                f"version {header.version}'s whole set would be {len(full)} bytes, over the "
                f"limit of {self.max_snapshot_bytes} bytes (max_snapshot_bytes)"
            )
        with self.store.transaction():
            receipt = self._commit(header, env, accepted.rotation, full)
        self.reports.remember(accepted.snapshot)
        if accepted.rotation is not None:
            self._log_rotation(accepted.rotation)
        log.info(
            "accepted snapshot party=%s pairing=%s version=%d records=%d",
            header.party,
            header.pairing,
            header.version,
            header.record_count,
            extra={
                "party": header.party,
                "pairing": header.pairing,
                "version": header.version,
            },
        )
        metrics.SNAPSHOTS_RECEIVED.labels(header.party, header.pairing, metrics.ACCEPTED, "").inc()
        metrics.LAST_ACCEPTED.labels(header.party, header.pairing).set(self.clock().timestamp())
        self.reconcile(header.pairing)
        return receipt

    def _commit(
        self,
        header: SnapshotHeader,
        env: Envelope,
        rotation: Rotation | None,
        full: bytes | None,
    ) -> bytes:
        """The snapshot, its receipt, the key it rotated to, and their log entries, in the
        caller's transaction; the receipt points at the snapshot's entry, so that comes first."""
        logged = self.log.append(self.store, _entry(pb.LOG_ENTRY_KIND_SNAPSHOT, header, env))
        receipt = self._receipt(header.party, header.pairing, header.version, env, logged)
        self.store.commit_snapshot(
            header.party, header.pairing, header.version, env, receipt, rotation, full
        )
        signed = Envelope.from_pb(pb.Envelope.FromString(receipt))
        self.log.append(self.store, _entry(pb.LOG_ENTRY_KIND_RECEIPT, header, signed))
        if rotation is not None:
            key = rotation.new_key.spki_der
            entry = _entry(pb.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT, header, env, key)
            self.log.append(self.store, entry)
        return receipt

    def fetch_peer_snapshot(
        self, tls_party: str | None, pairing: str, version: int, base_sha256: bytes = b""
    ) -> tuple[Envelope, bytes]:
        """The peer's snapshot as it signed it, and its whole set when it is a delta on another
        snapshot than `base_sha256`, the one the caller holds (b"" when none is needed)."""
        peer = self._peer_of(tls_party, pairing)
        env = self.peer_snapshot(tls_party, pairing, version)
        header = delta.accepted_header(env.payload)  # accepted: its records need no walk
        if not header.delta or header.previous_digest == base_sha256:
            return env, b""
        full = whole_set(self.store, peer, pairing, header.version)
        if full is None:  # the snapshot was just read: only a damaged database loses it
            raise StoreError(f"{peer}'s snapshot version {header.version} vanished while served")
        return env, full

    def peer_snapshot(self, tls_party: str | None, pairing: str, version: int) -> Envelope:
        """The peer's snapshot `version` (0: latest) as it signed it, without its whole set."""
        peer = self._peer_of(tls_party, pairing)
        env = self.store.snapshot(peer, pairing, version)
        if env is None:
            which = f"version {version}" if version else "any snapshot"
            raise NotFound(f"pairing '{bounded(pairing)}': party {peer!r} has not pushed {which}")
        return env

    def report(
        self, tls_party: str | None, pairing: str, report_id: str, wait: ReportWait | None = None
    ) -> StoredReport:
        """A report of the pairing: `report_id`, or the latest; with `wait`, the latest once it
        is what the caller waits for (server.report_news), or as it stands when time is up."""
        peer = self._peer_of(tls_party, pairing)
        if wait is not None and not report_id:
            current = replace(wait, current=partial(self._current, pairing, peer))
            stored = self.news.wait(lambda: self.store.report(pairing), current)
        else:
            stored = self.store.report(pairing, report_id)
        if stored is None:
            raise NotFound(f"pairing '{bounded(pairing)}': no report {bounded(report_id) or 'yet'}")
        return stored

    def _current(self, pairing: str, peer: str, body: ReportBody) -> bool:
        """Whether a report is what a waiting call may be answered: it compares the parties'
        latest snapshots, and the peer is not pushing a newer one (server.report_news)."""
        return not self.news.pushing(peer, pairing) and self.reports.compares_latest(pairing, body)

    def add_signature(
        self, tls_party: str | None, pairing: str, report_id: str, sig: Sig
    ) -> StoredReport:
        stored = self.report(tls_party, pairing, report_id)
        assert tls_party is not None  # report() checked membership
        key = party_keyring(self.policy, self.store, tls_party).keys_for(pairing).get(sig.keyid)
        data = pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)
        if key is None or not key.verify(sig.sig, data):
            raise BadReportSignature(
                f"report {bounded(report_id)}: signature by key {bounded(sig.keyid[:16])} does "
                f"not verify with a key in force for party {tls_party!r} in pairing "
                f"'{bounded(pairing)}'"
            )
        self._add_signature(tls_party, stored, sig)
        self.news.changed()
        log.info("party=%s signed report=%s pairing=%s", tls_party, report_id, pairing)
        return self.report(tls_party, pairing, report_id)

    def _add_signature(self, party: str, stored: StoredReport, sig: Sig) -> None:
        """Store the signature and log the party's signed envelope of the body, at once."""
        with self.store.transaction():
            if not self.store.add_report_signature(stored.report_id, sig):
                return
            env = Envelope(REPORT_PAYLOAD_TYPE, stored.envelope.payload, (sig,))
            entry = log_entry(
                pb.LOG_ENTRY_KIND_REPORT_SIGNATURE,
                env,
                party=party,
                pairing=stored.pairing,
                report_id=stored.report_id,
            )
            self.log.append(self.store, entry)

    # The transparency log: its checkpoints, proofs and leaf hashes are readable by every member
    # of the federation, because an inclusion or consistency proof needs the whole tree. An
    # entry's bytes (snapshots, reports) only by the parties of its pairing: the others get its
    # leaf hash alone, so no pairing's inventories leak to another's members.

    def checkpoint(self, tls_party: str | None, size: int) -> bytes:
        """The latest signed checkpoint, or with `size` the one signed at that size."""
        self._member(tls_party)
        note = self.store.checkpoint(size)
        if note is None:
            which = f"of size {size}" if size else "yet"
            raise NotFound(f"the log has no checkpoint {which} (it has {self._size()} entries)")
        return note

    def log_update(
        self, tls_party: str | None, proof_from: int, inclusion_of: Sequence[int], entries: bool
    ) -> LogUpdate:
        """The latest checkpoint with what a log watch asks next (GetCheckpointRequest): the
        consistency proof from the tree of `proof_from` entries, the inclusion proofs of the
        entries `inclusion_of` below its size, and with `entries` the leaf hashes from
        `proof_from` on with the entries a log watch reads: the caller's own, and the chain
        resets of its pairings (every other entry withheld, as another pairing's are)."""
        self._member(tls_party)
        with self.store.transaction():  # the size and the checkpoint of that size, together
            size = self._size()
            note = self.store.checkpoint(size)
        if note is None:
            raise NotFound(f"the log has no checkpoint yet (it has {size} entries)")
        wanted = [i for i in inclusion_of[:8] if i < size]
        proves = 0 < proof_from < size
        leaves = self.store.leaf_hashes(size) if proves or wanted else []
        consistency = tlog.consistency_proof(leaves, proof_from) if proves else []
        included = [(i, tlog.inclusion_proof(leaves, i)) for i in wanted]
        served = None
        if entries and proof_from < size:
            end = min(size, proof_from + MAX_LOG_ENTRIES)
            own = self._pairings_of(tls_party)
            hashes, leaves_shown = self.store.shown_entries(
                proof_from, end, LOG_BUDGET, lambda leaf: _watched(leaf, tls_party, own)
            )
            served = LogRange(proof_from, tuple(hashes), tuple(leaves_shown))
        return LogUpdate(note, size, consistency, included, served)

    def log_entries(self, tls_party: str | None, start: int, end: int) -> LogRange:
        """The leaf hashes of start <= index < end and, byte for byte, the entries of the
        caller's own pairings (maybe the first part of the range only)."""
        self._member(tls_party)
        if end <= start:
            raise _bad_request(f"log entries {start}..{end}: the end must be after the start")
        if end - start > MAX_LOG_ENTRIES:
            raise _bad_request(
                f"log entries {start}..{end}: {end - start} asked for, at most "
                f"{MAX_LOG_ENTRIES} per request"
            )
        self._within(end)
        own = self._pairings_of(tls_party)
        hashes, entries = self.store.shown_entries(
            start, end, LOG_BUDGET, lambda leaf: _shown(leaf, own)
        )
        return LogRange(start, tuple(hashes), tuple(entries))

    def inclusion_proof(self, tls_party: str | None, index: int, size: int) -> list[bytes]:
        self._member(tls_party)
        if not 0 <= index < size:
            raise _bad_request(f"inclusion proof: entry {index} is not in a tree of size {size}")
        self._within(size)
        return tlog.inclusion_proof(self.store.leaf_hashes(size), index)

    def receipt_proof(
        self, tls_party: str | None, receipt: pb.Envelope, held: int
    ) -> tuple[int, int, list[bytes]]:
        """The consistency proof between the tree of `held` entries and the checkpoint the
        receipt (as this server signed it) names, smaller size first; (0, 0, []) when none is
        needed or `held` is not a tree of this log."""
        body = pb.ReceiptBody.FromString(receipt.payload)
        return self.proof_between(tls_party, held, body.checkpoint)

    def proof_between(
        self, tls_party: str | None, held: int, note: bytes
    ) -> tuple[int, int, list[bytes]]:
        """The consistency proof between the tree of `held` entries and the checkpoint `note`
        claims (unverified: the reader verifies the proof against the roots it trusts),
        smaller size first; (0, 0, []) when none is needed or either is not a tree here."""
        checkpoint = claimed_checkpoint(note)
        size = checkpoint.size if checkpoint is not None else 0
        first, second = sorted((held, size))
        if first == 0 or first == second or second > self._size():
            return 0, 0, []
        return first, second, self.consistency_proof(tls_party, first, second)

    def consistency_proof(self, tls_party: str | None, first: int, second: int) -> list[bytes]:
        self._member(tls_party)
        if not 0 < first <= second:
            raise _bad_request(
                f"consistency proof {first} -> {second}: sizes must be 0 < first <= second"
            )
        self._within(second)
        return tlog.consistency_proof(self.store.leaf_hashes(second), first)

    def _pairings_of(self, tls_party: str | None) -> frozenset[str]:
        return frozenset(
            name
            for name, spec in self.policy.pairings.items()
            if tls_party in (spec.root, spec.subordinate)
        )

    def _member(self, tls_party: str | None) -> None:
        if tls_party not in self.policy.parties:
            raise AccessDenied(f"party {tls_party!r} is not a member of the federation")

    def _within(self, size: int) -> None:
        """NotFound unless the log has at least `size` entries: the caller is ahead of it."""
        if size > self._size():
            raise NotFound(f"the log has {self._size()} entries, not {size}")

    def _size(self) -> int:
        return self.store.log_size()

    def _log_rotation(self, rotation: Rotation) -> None:
        old = ", ".join(k.keyid[:16] for k in rotation.old_keys)
        log.info(
            "party=%s pairing=%s rotated its signing key at version=%d: %s -> %s",
            rotation.party,
            rotation.pairing,
            rotation.version,
            old,
            rotation.new_key.keyid[:16],
            extra={
                "party": rotation.party,
                "pairing": rotation.pairing,
                "version": rotation.version,
            },
        )

    def _peer_of(self, tls_party: str | None, pairing: str) -> str:
        spec = self.policy.pairings.get(pairing)
        if tls_party is None or spec is None or tls_party not in (spec.root, spec.subordinate):
            raise AccessDenied(
                f"party {tls_party!r} is not a member of pairing '{bounded(pairing)}'"
            )
        return spec.subordinate if tls_party == spec.root else spec.root

    def _receipt(
        self, party: str, pairing: str, version: int, env: Envelope, logged: Logged
    ) -> bytes:
        receipt = receipt_for(
            party=party,
            pairing=pairing,
            version=version,
            payload=env.payload,
            accepted_at=self.clock(),
            server=self.name,
            log_index=logged.index,
            checkpoint=logged.checkpoint,
        )
        signed: bytes = sign_receipt(receipt, self.key).to_pb().SerializeToString()
        return signed

    def _reconcile(self, pairing: str) -> None:
        # The snapshot is committed already; a failing reconciliation must not undo the push.
        try:
            self.reports.make_if_stale(pairing)
        except Exception:
            log.exception("reconciling pairing=%s failed", pairing)


@dataclass(frozen=True)
class LogUpdate:
    """The latest checkpoint and what came with it (`Exchange.log_update`)."""

    note: bytes
    size: int
    consistency: list[bytes]
    inclusion: list[tuple[int, list[bytes]]]  # (index, proof in the tree of `size`)
    entries: LogRange | None


def _entry(
    kind: pb.LogEntryKind.ValueType, header: SnapshotHeader, env: Envelope, key: bytes = b""
) -> pb.LogEntry:
    """The log entry of an envelope about the snapshot `header` heads."""
    return log_entry(
        kind,
        env,
        party=header.party,
        pairing=header.pairing,
        version=header.version,
        announced_key=key,
    )


def _bad_request(message: str) -> BadLogRequest:
    return BadLogRequest(message)


def _watched(leaf: bytes, party: str | None, pairings: frozenset[str]) -> bool:
    """Whether a log watch reads the entry: one of the party's own, or a chain reset, of its
    pairings, or the server's key announcement (everyone's). The peer's snapshots and the
    reports it leaves to GetLogEntries: they are most of a steady cycle's log bytes, and the
    watch only checks what is signed as its party."""
    try:
        entry = pb.LogEntry.FromString(leaf)
    except DecodeError:
        return False
    if entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY:
        return True
    mine = entry.party == party or entry.kind == pb.LOG_ENTRY_KIND_CHAIN_RESET
    return mine and entry.pairing in pairings


def _shown(leaf: bytes, pairings: frozenset[str]) -> bool:
    """Whether GetLogEntries serves the entry to a member of `pairings`: an entry of one of
    them, or the server's key announcement, which every party follows. Bytes that do not
    parse, which only a damaged database could hold, are withheld rather than served."""
    try:
        entry = pb.LogEntry.FromString(leaf)
    except DecodeError:
        return False
    return entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY or entry.pairing in pairings
