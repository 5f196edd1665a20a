"""Step 4 of the log watch (`agent.daemon.log_watch`): the entries of a range that carry this
party's name are ones its agent made, and the chain resets the exchange operator logged.

An entry signed as us that we did not make is a finding, unless a later chain reset in the range
set its snapshot aside: that is the misuse the reset answered, logged instead of raised. A
CHAIN_RESET entry counts only once a pinned server key signed its statement and the entry is
proven in the checkpoint; the resets are returned for the caller to apply to trusted state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from invsync.agent.daemon.log_reading import (
    Fail,
    LogClient,
    check_included,
    inconsistent,
    shown_entries,
)
from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.chain_reset import ChainReset, open_chain_reset
from invsync.agent.exchange.checkpoint import Checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.log_entry import (
    holds_canonical,
    kind_name,
    parse_log_entry,
)
from invsync.agent.exchange.server_keyring import ServerKeyRing
from invsync.agent.store.agent_store import AgentStore, SentSnapshot
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.agent")


class OwnEntries:
    """Checks a range of the log for one party (see the module docstring)."""

    def __init__(self, party: str, store: AgentStore, server_ring: ServerKeyRing) -> None:
        self.party = party
        self.store = store
        # With the rotations the range announces followed already (`LogWatch.head`): a chain
        # reset counts only if signed by the key in force at its place in the log.
        self.server_ring = server_ring

    def check(
        self, client: LogClient, pairing: str, start: int, head: Checkpoint
    ) -> list[ChainReset]:
        """Step 4: each entry of this party in start <= index < head.size is one we made, or a
        snapshot (with its receipt and key announcement) that a later chain reset of the range
        set aside; the chain resets, once verified."""
        fail = inconsistent(pairing)
        resets: dict[int, ChainReset] = {}
        foreign: list[tuple[int, pb.LogEntry]] = []
        announced: dict[int, tuple[pb.LogEntry, bytes]] = {}
        for index, leaf in shown_entries(client, start, head.size, fail):
            if not leaf:
                continue  # another pairing's entry: none of ours is ever withheld from us
            try:
                entry = parse_log_entry(leaf, f"log entry {index}")
            except InvsyncError as e:
                raise fail(str(e)) from e
            if entry.kind == pb.LOG_ENTRY_KIND_CHAIN_RESET:
                resets[index] = self._chain_reset(client, entry, leaf, index, head, fail)
            elif entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY:
                announced[index] = (entry, leaf)  # followed before the range is read
            elif entry.party == self.party and not self._made_here(entry):
                foreign.append((index, entry))
        self._check_followed(client, announced, start, head, fail)
        for index, entry in foreign:
            self._excuse(index, entry, resets, fail)
        return list(resets.values())

    def _check_followed(
        self,
        client: LogClient,
        announced: Mapping[int, tuple[pb.LogEntry, bytes]],
        start: int,
        head: Checkpoint,
        fail: Fail,
    ) -> None:
        """Each rotation followed whose announcement lies in the range is that entry of the log
        held from now on, proven included in `head`: a rotation may have been followed from the
        checkpoint a receipt or report came with (agent.daemon.server_key_follow), which the
        agent does not hold, and nothing else ties the two trees together at that place."""
        for rotation in self.server_ring.chain():
            if not start <= rotation.index < head.size:
                continue
            where = f"log entry {rotation.index} (the server's key announcement followed)"
            entry, leaf = announced.get(rotation.index, (None, b""))
            if entry is None or entry.announced_key != rotation.new_key.spki_der:
                raise fail(
                    f"{where}: the log of size {head.size} holds no announcement of server key "
                    f"{rotation.new_key.keyid[:16]} there, which this agent followed"
                )
            check_included(client, leaf, rotation.index, head, where, fail)

    def _excuse(
        self, index: int, entry: pb.LogEntry, resets: Mapping[int, ChainReset], fail: Fail
    ) -> None:
        """An entry signed as us that we did not make is a finding, unless the exchange operator
        has since set its snapshot aside (the misuse the reset answered: logged, not raised)."""
        what = (
            f"log entry {index} is a {kind_name(entry)} entry signed as {self.party} (pairing "
            f"{entry.pairing!r}, version {entry.version}, report "
            f"{entry.report_id[:12] or '-'}) that this agent did not make"
        )
        chained = entry.kind != pb.LOG_ENTRY_KIND_REPORT_SIGNATURE
        if not chained or not any(
            at > index
            and (r.party, r.pairing) == (self.party, entry.pairing)
            and entry.version in r.superseded
            for at, r in resets.items()
        ):
            raise fail(what)
        log.warning(
            "party=%s %s; a chain reset set it aside",
            self.party,
            what,
            extra={"party": self.party, "pairing": entry.pairing},
        )

    def _chain_reset(
        self,
        client: LogClient,
        entry: pb.LogEntry,
        leaf: bytes,
        index: int,
        head: Checkpoint,
        fail: Fail,
    ) -> ChainReset:
        """A CHAIN_RESET entry's statement, once a pinned server key signed it and the entry is
        proven in the checkpoint: a reset shown to this agent alone would be a split view."""
        where = f"log entry {index}"
        try:
            reset = open_chain_reset(entry, where, self.server_ring.keys_at(index + 1))
        except InvsyncError as e:
            raise fail(str(e)) from e
        check_included(client, leaf, index, head, where, fail)
        log.warning(
            "party=%s %s (%s)",
            self.party,
            reset.describe(),
            where,
            extra={"party": self.party, "pairing": reset.pairing},
        )
        return reset

    def _made_here(self, entry: pb.LogEntry) -> bool:
        """Whether this agent made the entry: pushed its snapshot (or the key announcement it
        carries), got its receipt for one, or gave its co-signature."""
        if entry.kind == pb.LOG_ENTRY_KIND_REPORT_SIGNATURE:
            return self.store.has_cosigned(entry.report_id)
        pushed = self.store.pushed_snapshot(entry.pairing, entry.version)
        if pushed is None:
            return False
        if entry.kind == pb.LOG_ENTRY_KIND_RECEIPT:
            return True
        kinds = (pb.LOG_ENTRY_KIND_SNAPSHOT, pb.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT)
        return entry.kind in kinds and holds_canonical(entry.envelope, sent_envelope(pushed))


def sent_envelope(sent: SentSnapshot) -> Envelope:
    """The envelope of a snapshot this agent sent, as it pushed it."""
    signatures = tuple(Sig(keyid, sig) for keyid, sig in sent.signatures)
    return Envelope(sent.payload_type, sent.payload, signatures)
