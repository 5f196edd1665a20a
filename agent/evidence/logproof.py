"""Checks 2 to 5 of a bundle, on the log alone, before any entry is parsed:

2. every checkpoint is a signed note of the bundle's server, verified with a server key in force
   for its tree size: a pinned key, or a key the server announced in a SERVER_KEY entry
   (`agent.exchange.server_key`) signed by the key it replaces. Checkpoints are opened in
   order of size; one that ends with an announcement (signed by both keys) is opened with the
   key in force before it, the leaf hashes of the bundle's first entries must make its root,
   and only then is the entry read and the new key followed from there on;
3. checkpoints of one tree size have one root hash (two roots for one size: the log forked);
4. each checkpoint is consistent with the next larger one (the log was only appended to);
5. every index of the latest checkpoint's tree is in the bundle, in order; each entry's exact
   bytes are hashed (RFC 6962 leaf hash) and proven included in the latest checkpoint, and the
   leaf hashes of all entries, withheld ones included, make its root.

Proofs are verified by `agent.exchange.tlog`, checkpoints opened by `agent.exchange.checkpoint`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from invsync.agent.errors import InvsyncError
from invsync.agent.evidence.bundle import (
    CONSISTENCY,
    INCLUSION,
    Bundle,
    BundleEntry,
    CheckpointFile,
)
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import (
    BadCheckpoint,
    Checkpoint,
    claimed_checkpoint,
)
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.log_entry import parse_log_entry
from invsync.agent.exchange.rejections import RetiredServerKeyError
from invsync.agent.exchange.server_key import open_server_key
from invsync.agent.exchange.server_keyring import (
    ServerKeyRing,
    ServerRotation,
    open_checkpoint_in_force,
    unsigned_by_ring,
)
from invsync.v1 import invsync_pb2 as pb


@dataclass(frozen=True)
class VerifiedLog:
    head: Checkpoint  # the latest checkpoint; every entry of the bundle is in its tree
    checkpoints: tuple[Checkpoint, ...]  # one per tree size, ascending
    leaf_hashes: tuple[bytes, ...]  # of every index below head.size
    leaves: Mapping[int, bytes]  # index -> the exact bytes of each entry the bundle holds
    server_ring: ServerKeyRing  # the pinned server keys, and the rotations the log proved

    def root_at(self, size: int) -> bytes:
        """The root of the log's first `size` entries, from the verified leaf hashes."""
        return tlog.root(self.leaf_hashes[:size])


def verify_log(bundle: Bundle, server_keys: Sequence[VerifyKey]) -> VerifiedLog:
    """Checks 2 to 5, in order; CheckFailed names the first checkpoint or entry that fails."""
    if not bundle.checkpoints:
        raise CheckFailed("checkpoint-signature", "checkpoints/", "the bundle holds no checkpoint")
    ring, opened = _open_following(bundle, ServerKeyRing({k.keyid: k for k in server_keys}))
    heads = _one_root_per_size(opened)
    _check_consistency(heads, bundle)
    hashes, leaves = _check_inclusion(bundle, heads[-1])
    return VerifiedLog(heads[-1], tuple(heads), hashes, leaves, ring)


def _open_following(
    bundle: Bundle, ring: ServerKeyRing
) -> tuple[ServerKeyRing, list[tuple[CheckpointFile, Checkpoint]]]:
    """Check 2: each checkpoint opened with the key in force for its size, in order of the
    size it claims, following the server's key announcements (see the module docstring)."""
    prefix = _prefix_hashes(bundle.entries)
    opened: list[tuple[int, CheckpointFile, Checkpoint]] = []
    files = list(enumerate(bundle.checkpoints))
    for position, file in sorted(files, key=lambda pair: (_claimed_size(pair[1].note), pair[0])):
        head = open_note_in_force(file.note, bundle.server, ring, file.name, first=not opened)
        opened.append((position, file, head))
        announced = _announcement(bundle.entries, prefix, head, bundle.server, ring)
        if announced is not None:
            ring = ring.with_rotation(announced)
    return ring, [(file, head) for _, file, head in sorted(opened, key=lambda o: o[0])]


def _claimed_size(note: bytes) -> int:
    claimed = claimed_checkpoint(note)
    return claimed.size if claimed is not None else -1


def _prefix_hashes(entries: Sequence[BundleEntry]) -> list[bytes]:
    """The leaf hashes of the bundle's first entries, as far as they run 0, 1, 2... in order
    (checks 5 and 6 judge the rest)."""
    hashes: list[bytes] = []
    for position, item in enumerate(entries):
        if item.index != position:
            break
        hashes.append(item.leaf_hash if item.withheld else tlog.leaf_hash(item.leaf))
    return hashes


def _announcement(
    entries: Sequence[BundleEntry],
    prefix: Sequence[bytes],
    head: Checkpoint,
    server: str,
    ring: ServerKeyRing,
) -> ServerRotation | None:
    """The rotation the last entry of `head`'s tree proves, when it is a SERVER_KEY entry the
    bundle holds and its first entries make the tree `head` was signed for."""
    index = head.size - 1
    if not 0 <= index < len(prefix) or index <= ring.latest_index():
        return None
    item = entries[index]
    if item.withheld or tlog.root(prefix[: head.size]) != head.root:
        return None  # check 5 names a bundle whose entries do not make its checkpoints
    try:
        logged = parse_log_entry(item.leaf, entry(index))
    except InvsyncError:
        return None  # check 7 names it
    if logged.kind != pb.LOG_ENTRY_KIND_SERVER_KEY:
        return None
    try:
        return open_server_key(logged, index, server, ring)
    except InvsyncError as e:
        raise CheckFailed("checkpoint-signature", entry(index), str(e)) from e


def open_note_in_force(
    note: bytes,
    server: str,
    ring: ServerKeyRing,
    where: str,
    check: str = "checkpoint-signature",
    *,
    first: bool = False,
) -> Checkpoint:
    """The checkpoint of `note` once a key of the server in force for its tree size verifies it
    (origin and key name are the server's name); CheckFailed(`check`) otherwise, which says
    what to pin when `first` (the bundle's smallest checkpoint) opens with no pinned key."""
    try:
        return open_checkpoint_in_force(note, server, ring)
    except (BadCheckpoint, RetiredServerKeyError) as e:
        detail = str(e)
        if first and isinstance(e, BadCheckpoint) and unsigned_by_ring(e) and not ring.chain():
            detail += f" ({FIRST_KEY})"
        raise CheckFailed(check, where, detail) from e


# Said when no pinned key opens a checkpoint before any announcement was followed: the verifier
# follows the server's rotations forward from the pinned keys, never back.
FIRST_KEY = (
    "pin the server key the log starts with, beside any later one: its rotations are "
    "followed forward from the pinned keys, never back"
)


def _one_root_per_size(opened: Sequence[tuple[CheckpointFile, Checkpoint]]) -> list[Checkpoint]:
    first: dict[int, tuple[CheckpointFile, Checkpoint]] = {}
    for file, head in opened:
        seen = first.setdefault(head.size, (file, head))
        if seen[1].root != head.root:
            raise CheckFailed(
                "fork",
                f"checkpoints of size {head.size}",
                f"{seen[0].name} and {file.name} have different root hashes: the log forked",
            )
    return [first[size][1] for size in sorted(first)]


def _check_consistency(heads: Sequence[Checkpoint], bundle: Bundle) -> None:
    proofs = {(p.first, p.second): p.hashes for p in bundle.consistency}
    needed = {(old.size, new.size) for old, new in pairwise(heads)}
    # A bundle holds nothing unverified: a proof no check uses could be read as evidence.
    for first, second in [(p.first, p.second) for p in bundle.consistency]:
        if (first, second) not in needed:
            raise CheckFailed(
                "consistency",
                CONSISTENCY,
                f"a proof between sizes {first} and {second}, which are not two consecutive "
                "checkpoints of the bundle: it proves nothing here",
            )
    if len(proofs) < len(bundle.consistency):
        raise CheckFailed("consistency", CONSISTENCY, "a second proof between the same sizes")
    for old, new in pairwise(heads):
        where = f"checkpoints of size {old.size} and {new.size}"
        proof = proofs.get((old.size, new.size))
        if proof is None:
            raise CheckFailed("consistency", where, "the bundle holds no proof between them")
        try:
            tlog.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except tlog.ProofError as e:
            raise CheckFailed("consistency", where, str(e)) from e


def _check_inclusion(
    bundle: Bundle, head: Checkpoint
) -> tuple[tuple[bytes, ...], dict[int, bytes]]:
    if bundle.inclusion_size != head.size:
        raise CheckFailed(
            "inclusion",
            INCLUSION,
            f"the proofs are for a tree of size {bundle.inclusion_size}, not the latest "
            f"checkpoint's {head.size}",
        )
    _check_indexes(bundle.entries, head.size)
    held = {e.index for e in bundle.entries if not e.withheld}
    unused = sorted(set(bundle.inclusion) - held)
    if unused:
        raise CheckFailed(
            "inclusion",
            INCLUSION,
            f"a proof for entry {unused[0]}, which the bundle does not hold: it proves nothing",
        )
    hashes = tuple(_included(e, bundle, head) for e in bundle.entries)
    if tlog.root(hashes) != head.root:
        raise CheckFailed(
            "inclusion",
            "the entries",
            f"their leaf hashes do not make the root of the latest checkpoint (size {head.size})",
        )
    return hashes, {e.index: e.leaf for e in bundle.entries if not e.withheld}


def _check_indexes(entries: Sequence[BundleEntry], size: int) -> None:
    """Every index below `size` once, in log order: a removed or reordered entry shows here."""
    for position, item in enumerate(entries):
        if position >= size:
            raise CheckFailed(
                "inclusion",
                entry(item.index),
                f"beyond the latest checkpoint's tree of size {size}",
            )
        if item.index > position:
            raise CheckFailed("inclusion", entry(position), "missing from the bundle")
        if item.index < position:
            raise CheckFailed(
                "inclusion", entry(item.index), f"listed again, out of log order (at {position})"
            )
    if len(entries) < size:
        raise CheckFailed(
            "inclusion",
            entry(len(entries)),
            f"missing from the bundle (the latest checkpoint's tree has {size} entries)",
        )


def _included(item: BundleEntry, bundle: Bundle, head: Checkpoint) -> bytes:
    """The entry's leaf hash: of its exact bytes, proven included before anything parses them."""
    where = entry(item.index)
    if item.withheld:
        if len(item.leaf_hash) != tlog.HASH_SIZE:
            raise CheckFailed("inclusion", where, "the withheld entry's leaf hash is not 32 bytes")
        return item.leaf_hash
    leaf = tlog.leaf_hash(item.leaf)
    proof = bundle.inclusion.get(item.index)
    if proof is None:
        raise CheckFailed("inclusion", where, "the bundle holds no inclusion proof for it")
    try:
        tlog.verify_inclusion(leaf, item.index, head.size, proof, head.root)
    except tlog.ProofError as e:
        raise CheckFailed("inclusion", where, str(e)) from e
    return leaf
