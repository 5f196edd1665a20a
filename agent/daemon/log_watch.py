"""The agent watches the exchange's transparency log (DESIGN §6a), each cycle and per pairing.

`LogWatch.check`, after the cycle's push and before anything is co-signed:

1. fetches the log's latest checkpoint (in a co-signing cycle it comes with the first report
   asked for, with what the next steps read: `LogWatch.ask`; nothing is signed before the
   watch is done) and opens it with the server key in force for its size (pinned in
   `server.signing_keys`, or announced since in the log and followed: a checkpoint no key
   known here opens is first taken as a sign of a rotation to follow,
   `agent.daemon.server_key_follow`), under the log's origin: the configured `server.name`,
   else the server name the first verified receipt gave (adopted once per agent,
   `agent.exchange.trusted`);
2. checks that it extends the agent's one verified checkpoint, shared by all its pairings, by a
   consistency proof (the log was only appended to; one size with two roots is a fork). The
   first time there is none to check against: the checkpoint is trusted on first use, and a
   log line says so;
3. checks the SNAPSHOT entry of every stored receipt of the pairing not checked yet: the
   receipt carries a checkpoint (from the first one on, a receipt without is no "server
   without a log" but a finding), the server serves the entry's exact bytes, they hold the
   envelope this agent pushed, byte for byte in the log's canonical form
   (`agent.exchange.log_entry`), and their leaf hash is proven included in the checkpoint;
4. reads every entry added since the checkpoint held (the whole log the first time): each entry
   of this party (its snapshots, receipts, key announcements and report co-signatures, in any
   of its pairings) must be one this agent made: a snapshot it pushed, a receipt for one, a
   co-signature it gave. Anything else signed as us is a finding. A CHAIN_RESET entry (the
   exchange operator's `invsync server reset-chain`) must be signed by a pinned server key and
   proven in the checkpoint; it is then applied to its pairing's trusted state (a reset peer's
   set-aside snapshots and key rotations stop counting), and logged as a warning. A SERVER_KEY
   entry (the server's `invsync server keys rotate`) not followed yet is followed
   (`agent.daemon.server_key_follow`) before anything after it is judged: once step 1 opened
   the latest checkpoint with the keys known then, the entries it adds are read for
   announcements, each is followed, and the checkpoint is opened again with the keys in force
   at its size now (a checkpoint past the announcement that the retired key alone signed is a
   `retired-server-key` refusal, not a checkpoint to hold); the chain resets are judged with
   those keys too. The restore (`agent.daemon.restore`) takes its checkpoint the same way;
5. only then holds the checkpoint, saved with the receipts now checked in one transaction, and
   adopted in memory after the commit. The agent's next snapshot carries it
   (`SnapshotHeader.log_checkpoint`).

`check_peer_view` runs when the report check has verified the peer's current snapshot: the
checkpoint its header carries, opened with the pinned server key (or one followed since: a
checkpoint no key known here opens is first taken as a rotation the peer met before us, and
followed), must be our own (same size, same root) or be consistent with it by a proof the server
serves between the two sizes.

Any failure is a finding the exchange operator must act on (`log-inconsistent`,
`log-split-view`), kept in the agent's database and logged (`agent.daemon.refusals`), and raised:
nothing is co-signed while it lasts, and the trusted state stays as it was. A server that cannot
be reached is no finding: the cycle fails as for any other call, and the next one checks again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from invsync.agent.daemon.log_reading import (
    Fail,
    LogClient,
    check_included,
    inconsistent,
    latest_receipt,
    read_entry,
    split_view,
)
from invsync.agent.daemon.own_entries import OwnEntries, sent_envelope
from invsync.agent.daemon.refusals import recording_refusals
from invsync.agent.daemon.server_key_follow import ServerKeyFollow
from invsync.agent.errors import InvsyncError, StoreError
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import BadCheckpoint, Checkpoint, claimed_origin
from invsync.agent.exchange.client import LogAsk, NotFoundYet
from invsync.agent.exchange.log_entry import (
    holds_canonical,
    kind_name,
    parse_log_entry,
)
from invsync.agent.exchange.receipt import Receipt, decode_receipt
from invsync.agent.exchange.rejections import LogInconsistentError, LogSplitViewError
from invsync.agent.exchange.server_keyring import open_checkpoint_in_force
from invsync.agent.exchange.trusted import LogCheckpoint, PairingTrust
from invsync.agent.model.snapshot import SnapshotHeader
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.agent")


@dataclass(frozen=True)
class LogHead:
    """The log's latest checkpoint, opened with a pinned server key and consistent with the one
    the trusted state holds; not held by it yet."""

    checkpoint: Checkpoint
    note: bytes  # as served

    def held(self) -> LogCheckpoint:
        return LogCheckpoint(self.checkpoint.size, self.checkpoint.root, self.note)


class LogWatch:
    """Checks the log for one party's pairings (see the module docstring)."""

    def __init__(
        self,
        *,
        party: str,
        store: AgentStore,
        clock: Callable[[], datetime],
    ) -> None:
        """The server's keys are each pairing's trusted state's (`PairingTrust.server_ring`):
        pinned, and the rotations followed in the log."""
        self.party = party
        self.store = store
        self.clock = clock
        self.follower = ServerKeyFollow(party, store, clock)

    def check(self, client: LogClient, trust: PairingTrust[Any]) -> Checkpoint:
        """Steps 1 to 5; the checkpoint now held."""
        pairing = trust.pairing.name
        with recording_refusals(self.store, self.party, pairing, self.clock):
            receipts = self._receipts_to_check(trust)
            indexes = [receipt.log_index for _, receipt in receipts]
            held = trust.state.checkpoint
            start = held.size if held else 0
            head = self.head(client, trust, inclusion_of=indexes, entries=True)
            checked = self._check_receipts(client, pairing, receipts, head.checkpoint)
            own = OwnEntries(self.party, self.store, trust.server_ring)
            read = own.check(client, pairing, start, head.checkpoint)
            mine = self.store.pending_chain_resets(pairing)
            mine += [r for r in read if r.pairing == pairing]
            with trust.staged() as staged:  # adopted once the write committed
                for reset in mine:
                    staged.apply_chain_reset(reset)
                staged.replace_checkpoint(head.held())
                self.store.record_checkpoint(
                    pairing,
                    staged.state,
                    self.clock(),
                    checked=checked,
                    peer_resets=[r for r in mine if r.party != self.party],
                    deferred=[r for r in read if r.pairing != pairing],
                )
        log.info(
            "party=%s pairing=%s verified the log up to checkpoint size=%d",
            self.party,
            pairing,
            head.checkpoint.size,
            extra={"party": self.party, "pairing": pairing},
        )
        return head.checkpoint

    def ask(self, trust: PairingTrust[Any]) -> LogAsk:
        """What `check` asks with the latest checkpoint: asked with a report instead, the watch
        that follows answers from what came with it (`ExchangeClient.report`)."""
        held = trust.state.checkpoint
        receipts = self._receipts_to_check(trust)
        return LogAsk(held.size if held else 0, tuple(r.log_index for _, r in receipts))

    def head(
        self,
        client: LogClient,
        trust: PairingTrust[Any],
        *,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> LogHead:
        """Steps 1 and 2: the latest checkpoint, opened and consistent with the one held.

        The proof from the checkpoint held comes in the same answer, and with it the inclusion
        proofs of `inclusion_of` and (with `entries`) the entries since (steps 3 and 4 then
        read them without a call); each is verified where it is used, like any other."""
        pairing = trust.pairing.name
        held = trust.state.checkpoint
        note = client.checkpoint(
            proof_from=held.size if held else 0, inclusion_of=inclusion_of, entries=entries
        )
        checkpoint = self._open_head(client, trust, note)
        if self.follower.follow_before(client, trust, note, checkpoint):
            # Opened with the keys known before the rotations in its tree: again, with those
            # in force at its size now (the key they retired no longer is).
            checkpoint = self.open(
                note, trust, "the log's latest checkpoint", inconsistent(pairing)
            )
        held = trust.state.checkpoint
        if held is None:
            log.warning(
                "party=%s pairing=%s trusting on first use the log checkpoint of size %d (root "
                "%s): no earlier checkpoint was verified here",
                self.party,
                pairing,
                checkpoint.size,
                checkpoint.root.hex()[:16],
                extra={"party": self.party, "pairing": pairing},
            )
        else:
            _check_extends(client, pairing, held, checkpoint)
        return LogHead(checkpoint, note)

    def check_peer_view(
        self, client: LogClient, trust: PairingTrust[Any], peer: SnapshotHeader
    ) -> None:
        """LogSplitViewError unless the checkpoint the peer's header carries is one of our log.
        Nothing to compare before either side verified one."""
        own = trust.state.checkpoint
        if not peer.log_checkpoint or own is None:
            return
        split = split_view(trust.pairing.name)
        what = f"{peer.party}'s snapshot version {peer.version} carries a log checkpoint"
        try:
            theirs = self.open(peer.log_checkpoint, trust, what, split)
        except LogSplitViewError as e:
            # The peer may have seen a checkpoint signed by a key announced since ours.
            if not isinstance(e.__cause__, BadCheckpoint) or not self.follower.follow(
                client, trust
            ):
                raise
            theirs = self.open(peer.log_checkpoint, trust, what, split)
        # Following a rotation never moves the checkpoint held (agent.daemon.server_key_follow).
        _check_same_log(client, split, what, own, theirs)

    def open(
        self, note: bytes, trust: PairingTrust[Any], what: str, error: Callable[[str], InvsyncError]
    ) -> Checkpoint:
        """The checkpoint of `note` once the signature of a server key in force for its tree
        size verifies (`agent.exchange.server_keyring`), under the name the server's receipts
        give (before any receipt: the name the note claims, which the key must then have
        signed it under)."""
        state = trust.state
        receipt = latest_receipt(state)
        name = state.origin or (receipt.server if receipt is not None else claimed_origin(note))
        try:
            return open_checkpoint_in_force(note, name, trust.server_ring)
        except BadCheckpoint as e:
            raise error(f"{what}: {e}") from e

    def _open_head(self, client: LogClient, trust: PairingTrust[Any], note: bytes) -> Checkpoint:
        """The latest checkpoint opened; signed by a key not known here, after following the
        server's key announcements in the log (`agent.daemon.server_key_follow`)."""
        fail = inconsistent(trust.pairing.name)
        what = "the log's latest checkpoint"
        try:
            return self.open(note, trust, what, fail)
        except LogInconsistentError as e:
            if not isinstance(e.__cause__, BadCheckpoint) or not self.follower.follow(
                client, trust
            ):
                raise
        return self.open(note, trust, what, fail)

    def _receipts_to_check(self, trust: PairingTrust[Any]) -> list[tuple[int, Receipt]]:
        """Each receipt of the pairing not checked yet, and the latest again (a server that
        rewrote it since shows), by version."""
        versions = self.store.unchecked_receipts(trust.pairing.name)
        latest = max(trust.state.receipts, default=None)
        again = [latest] if latest is not None and latest not in versions else []
        return [(v, decode_receipt(trust.state.receipts[v])) for v in again + versions]

    def _check_receipts(
        self,
        client: LogClient,
        pairing: str,
        receipts: Sequence[tuple[int, Receipt]],
        head: Checkpoint,
    ) -> list[int]:
        """Step 3 for each of `receipts`; the versions not checked before."""
        for _, receipt in receipts:
            self._check_own_entry(client, pairing, receipt, head)
        unchecked = set(self.store.unchecked_receipts(pairing))
        return [version for version, _ in receipts if version in unchecked]

    def _check_own_entry(
        self, client: LogClient, pairing: str, receipt: Receipt, head: Checkpoint
    ) -> None:
        """Step 3: the receipt's entry holds what we pushed, and is in the checkpoint's tree."""
        index = receipt.log_index
        where = f"log entry {index} (the receipt's for {self.party}'s version {receipt.version})"
        fail = inconsistent(pairing)
        if not receipt.checkpoint:  # once a log is watched, no receipt may come without one
            detail = "carries no log checkpoint"
            raise fail(f"the receipt for {self.party}'s version {receipt.version} {detail}")
        if index >= head.size:
            raise fail(f"{where} is not in the latest checkpoint's tree of size {head.size}")
        leaf = read_entry(client, index, where, fail)
        self._check_is_pushed(pairing, receipt.version, leaf, where)
        check_included(client, leaf, index, head, where, fail)

    def _check_is_pushed(self, pairing: str, version: int, leaf: bytes, where: str) -> None:
        sent = self.store.sent_snapshot(pairing, version)
        if sent is None:  # record_receipt marks a snapshot sent with its receipt, at once
            raise StoreError(f"{self.store.path}: no sent snapshot {pairing} v{version}")
        fail = inconsistent(pairing)
        try:
            entry = parse_log_entry(leaf, where)
        except InvsyncError as e:
            raise fail(str(e)) from e
        named = (entry.kind, entry.party, entry.pairing, entry.version)
        if named != (pb.LOG_ENTRY_KIND_SNAPSHOT, self.party, pairing, version):
            raise fail(
                f"{where} is not that snapshot: it is a {kind_name(entry)} entry of party "
                f"{entry.party!r}, pairing {entry.pairing!r}, version {entry.version}"
            )
        if not holds_canonical(entry.envelope, sent_envelope(sent)):
            raise fail(f"{where} holds another envelope than the one {self.party} pushed")


def _check_extends(client: LogClient, pairing: str, held: LogCheckpoint, new: Checkpoint) -> None:
    """Step 2: `new` is the tree of `held` with entries appended (or `held` itself)."""
    what = (
        f"the log's checkpoint of size {new.size} does not extend the one of size {held.size} "
        "verified here"
    )
    fail = inconsistent(pairing)
    if new.size < held.size:
        raise fail(f"{what}: the log shrank")
    proof = client.consistency_proof(held.size, new.size) if new.size > held.size else []
    try:
        tlog.verify_consistency(held.size, new.size, held.root_hash, new.root, proof)
    except tlog.ProofError as e:
        raise fail(f"{what} ({e})") from e


def _check_same_log(
    client: LogClient,
    fail: Fail,
    what: str,
    own: LogCheckpoint,
    theirs: Checkpoint,
) -> None:
    """Their checkpoint and ours are of one log: equal, or the smaller a prefix of the larger."""
    if theirs.size == own.size:
        if theirs.root != own.root_hash:
            raise fail(
                f"{what} of size {own.size} with another root than ours of that size: the "
                "exchange showed the two parties different logs"
            )
        return
    if 0 in (theirs.size, own.size):
        return  # every tree extends the empty one
    (small, small_root), (large, large_root) = sorted(
        [(own.size, own.root_hash), (theirs.size, theirs.root)]
    )
    shown = f"{what} of size {theirs.size}, ours is of size {own.size}"
    try:
        proof = client.consistency_proof(small, large)
    except NotFoundYet as e:
        raise fail(f"{shown}: the server denies having a tree that large ({e})") from e
    try:
        tlog.verify_consistency(small, large, small_root, large_root, proof)
    except tlog.ProofError as e:
        raise fail(f"{shown}, and they are not of one log ({e})") from e
