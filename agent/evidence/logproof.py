"""Checks 2 to 5 of a bundle, on the log alone, before any entry is parsed:

2. every checkpoint is a signed note of the bundle's server, verified with a pinned server key;
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

from invsync.agent.evidence.bundle import (
    CONSISTENCY,
    INCLUSION,
    Bundle,
    BundleEntry,
    CheckpointFile,
)
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import BadCheckpoint, Checkpoint, open_pinned
from invsync.agent.exchange.keys import VerifyKey


@dataclass(frozen=True)
class VerifiedLog:
    head: Checkpoint  # the latest checkpoint; every entry of the bundle is in its tree
    checkpoints: tuple[Checkpoint, ...]  # one per tree size, ascending
    leaf_hashes: tuple[bytes, ...]  # of every index below head.size
    leaves: Mapping[int, bytes]  # index -> the exact bytes of each entry the bundle holds

    def root_at(self, size: int) -> bytes:
        """The root of the log's first `size` entries, from the verified leaf hashes."""
        return tlog.root(self.leaf_hashes[:size])


def verify_log(bundle: Bundle, server_keys: Sequence[VerifyKey]) -> VerifiedLog:
    """Checks 2 to 5, in order; CheckFailed names the first checkpoint or entry that fails."""
    if not bundle.checkpoints:
        raise CheckFailed("checkpoint-signature", "checkpoints/", "the bundle holds no checkpoint")
    opened = [
        (c, open_note(c.note, bundle.server, server_keys, c.name)) for c in bundle.checkpoints
    ]
    heads = _one_root_per_size(opened)
    _check_consistency(heads, bundle)
    hashes, leaves = _check_inclusion(bundle, heads[-1])
    return VerifiedLog(heads[-1], tuple(heads), hashes, leaves)


def open_note(
    note: bytes,
    server: str,
    keys: Sequence[VerifyKey],
    where: str,
    check: str = "checkpoint-signature",
) -> Checkpoint:
    """The checkpoint of `note` once one of the server's pinned `keys` verifies it (origin and
    key name are the server's name); CheckFailed(`check`) otherwise."""
    try:
        return open_pinned(note, server, keys)
    except BadCheckpoint as e:
        raise CheckFailed(check, where, str(e)) from e


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
