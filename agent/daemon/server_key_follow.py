"""The agent follows the exchange server's key rotation in its log, with no re-pinning.

When the server signs with a key this agent has not seen (a receipt, a report, the log's
latest checkpoint), the agent looks for the SERVER_KEY entries (`agent.exchange.server_key`)
after the last rotation it followed, from the checkpoint it holds on. The log watch and the
restore look too, in the entries a checkpoint they opened adds (`follow_before`), whatever key
signed it: the key an announcement retires may still open a later checkpoint, or sign a chain
reset, while it is the only one known here. For each, in log order:

1. the checkpoint of the tree ending with the entry is fetched and opened with a key in force
   there (the server signed it with the old key and the new one);
2. it extends the checkpoint held, by a consistency proof;
3. the entry's exact bytes are proven included in it;
4. the entry is opened: signed by the key in force and by the key it announces, naming this
   server and the key it replaces;
5. the rotation is saved, then adopted in memory. The checkpoint held stays as it was: the log
   watch checks every entry after it (those before the announcement too) before it holds a
   larger one.

The entry's kind is read from bytes not proven yet, only to find the candidates; nothing of an
entry counts before steps 1 to 4. A failure raises (a `log-inconsistent` finding for a proof
that fails, `bad-server-key-announcement` for an entry that proves nothing) and nothing is
saved; what the unknown key signed is then refused as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError

from invsync.agent.daemon.log_reading import LogClient, check_included, inconsistent, shown_entries
from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import Checkpoint, claimed_checkpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import verify_key_from_spki_der
from invsync.agent.exchange.log_entry import logged_envelope, parse_log_entry
from invsync.agent.exchange.server_key import open_server_key
from invsync.agent.exchange.server_keyring import open_checkpoint_in_force
from invsync.agent.exchange.trusted import PairingTrust
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.agent")


def no_known_server_signer(env: Envelope, trust: PairingTrust[Any]) -> bool:
    """Whether `env` names no signer the server's ring knows: the server signed it with a key
    it announced since, or someone else did (a key id is only a claim: the signatures are
    verified where the envelope is taken). A report's co-signatures are the parties'."""
    known = trust.server_ring.known()
    return not any(sig.keyid in known for sig in env.signatures)


class ServerKeyFollow:
    """Follows the server's key announcements for one agent (see the module docstring)."""

    def __init__(self, party: str, store: AgentStore, clock: Callable[[], datetime]) -> None:
        self.party = party
        self.store = store
        self.clock = clock

    def follow(self, client: LogClient, trust: PairingTrust[Any], upto: bytes | None = None) -> int:
        """Follow every announcement up to the checkpoint note `upto` (default: the log's
        latest); how many."""
        note = upto if upto is not None else client.checkpoint()
        latest = claimed_checkpoint(note)
        if latest is None:
            return 0
        held = trust.state.checkpoint
        ring = trust.server_ring
        # The entry before the checkpoint held: a checkpoint that ends with an announcement
        # opens with the old key, so an agent may hold it without having read the entry.
        start = max(0, (held.size - 1) if held else 0, ring.latest_index() + 1)
        if start >= latest.size:
            return 0
        fail = inconsistent(trust.pairing.name)
        origin = trust.state.origin or latest.origin
        shown = shown_entries(client, start, latest.size, fail)
        found = [(i, leaf) for i, leaf in shown if leaf and _kind(leaf) == _SERVER_KEY]
        followed = 0
        for n, (index, leaf) in enumerate(found):
            if _before_pin(trust, leaf, [later for _, later in found[n + 1 :]]):
                log.info(
                    "party=%s log entry %d announces a server key from before the pinned one "
                    "(a later announcement names it): the log is followed from the pin",
                    self.party,
                    index,
                    extra={"party": self.party, "pairing": trust.pairing.name},
                )
                continue
            own = client.checkpoint(tree_size=index + 1)  # of the tree ending with it
            self._adopt(client, trust, index, leaf, own, origin)
            followed += 1
        return followed

    def follow_before(
        self, client: LogClient, trust: PairingTrust[Any], note: bytes, head: Checkpoint
    ) -> int:
        """Follow the announcements among the entries after the checkpoint held, up to `head`'s
        tree (`note`, opened), before anything after them is judged: a checkpoint opened with
        the key one of them retires, or a chain reset it signed, counts only if that key was
        still in force there. How many were followed. The entries read here are those the log
        watch reads next."""
        held = trust.state.checkpoint
        start = max(held.size if held else 0, trust.server_ring.latest_index() + 1)
        if start >= head.size:
            return 0
        fail = inconsistent(trust.pairing.name)
        shown = shown_entries(client, start, head.size, fail)
        if not any(leaf and _kind(leaf) == _SERVER_KEY for _, leaf in shown):
            return 0
        return self.follow(client, trust, note)

    def _adopt(
        self,
        client: LogClient,
        trust: PairingTrust[Any],
        index: int,
        leaf: bytes,
        note: bytes,
        origin: str,
    ) -> None:
        """Steps 1 to 5 for the SERVER_KEY entry `index`; `note`: the checkpoint the server
        serves for the tree ending with it."""
        pairing = trust.pairing.name
        fail = inconsistent(pairing)
        where = f"log entry {index} (the server's key announcement)"
        try:
            head = open_checkpoint_in_force(note, origin, trust.server_ring)
        except InvsyncError as e:
            raise fail(f"{where}: its checkpoint: {e}") from e
        if head.size != index + 1:
            raise fail(f"{where}: the server served a checkpoint of size {head.size}")
        _check_extends(client, trust, head, fail)
        check_included(client, leaf, index, head, where, fail)
        rotation = open_server_key(parse_log_entry(leaf, where), index, origin, trust.server_ring)
        with trust.staged() as staged:  # adopted once the database took it
            staged.adopt_server_rotation(rotation)
            self.store.record_server_rotation(pairing, staged.state, rotation, self.clock())
        log.warning(
            "party=%s the exchange server %s rotated its signing key to %s (log entry %d), "
            "replacing %s: followed",
            self.party,
            origin,
            rotation.new_key.keyid[:16],
            index,
            rotation.old_key.keyid[:16],
            extra={"party": self.party, "pairing": pairing},
        )


_SERVER_KEY = pb.LOG_ENTRY_KIND_SERVER_KEY


def _before_pin(trust: PairingTrust[Any], leaf: bytes, later: list[bytes]) -> bool:
    """Whether an announcement is history from before the pinned keys, as `ServerKeyRing.chain`
    reads the log: nothing was followed from them yet, the key it replaces is none known here,
    and a later announcement names a pinned key (that one is then followed, and verified in
    full: a claim here skips nothing it does not replace). So an agent that pinned the key in
    force after two or more rotations (a party joining, a database rebuilt, a re-pin after a
    leak) starts from its pin. An announcement replacing a key known here is never skipped,
    whatever the checkpoints the server serves say: a server that strips a key's signature
    from them cannot make an agent pass over its rotation. What the entries claim is read
    before it is verified, only to decide this."""
    ring = trust.server_ring
    if ring.chain() or _claimed(leaf)[0] in ring.known():
        return False
    return any(_claimed(entry)[1] in ring.pinned for entry in later)


def _claimed(leaf: bytes) -> tuple[str, str]:
    """The key ids an announcement's bytes claim it replaces and announces, unverified
    (("", "") when they cannot be read: nothing is skipped for such an entry)."""
    try:
        entry = pb.LogEntry.FromString(leaf)
        body = pb.ServerKeyBody.FromString(logged_envelope(entry, "claimed").payload)
        old = verify_key_from_spki_der(body.old_key, source="claimed").keyid
        new = verify_key_from_spki_der(entry.announced_key, source="claimed").keyid
    except (DecodeError, InvsyncError):
        return "", ""
    return old, new


def _kind(leaf: bytes) -> int:
    try:
        return int(pb.LogEntry.FromString(leaf).kind)
    except DecodeError:  # no announcement; the log watch judges what the log holds
        return 0


def _check_extends(
    client: LogClient,
    trust: PairingTrust[Any],
    head: Checkpoint,
    fail: Callable[[str], InvsyncError],
) -> None:
    """The announcement's checkpoint and the one held are of one log."""
    held = trust.state.checkpoint
    if held is None or 0 in (held.size, head.size):
        return
    (small, small_root), (large, large_root) = sorted(
        [(held.size, held.root_hash), (head.size, head.root)]
    )
    proof = client.consistency_proof(small, large) if small != large else []
    try:
        tlog.verify_consistency(small, large, small_root, large_root, proof)
    except tlog.ProofError as e:
        raise fail(
            f"the checkpoint of size {head.size} that ends with the server's key announcement "
            f"is not consistent with the one of size {held.size} verified here ({e})"
        ) from e
