"""The exchange's transparency log as RFC 6962 / RFC 9162 define a Merkle tree: leaf and node
hashes, the tree head, and inclusion and consistency proofs, made and verified.

Small pure functions over hashes, so that the server (which makes proofs), each agent and the
offline evidence verifier (which check them) share one implementation, tested against the
transparency-dev/merkle vectors in tests/fixtures/merkle. Proofs are made from the full list of
leaf hashes: linear in the log's size, which is the number of exchanged envelopes, not of
certificates.

The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 and agree case for case with
transparency-dev/merkle's `proof.VerifyInclusion` and `proof.VerifyConsistency`:

- every hash that is hashed (the leaf hash, each proof hash, the roots checked by a path) must be
  HASH_SIZE bytes, so a short or long "hash" is refused before any hashing;
- a consistency proof from the empty tree (old_size 0) is refused: every tree extends the empty
  one, so such a "proof" proves nothing. A verifier holding no earlier checkpoint has nothing to
  check consistency against and must not call verify_consistency; `consistency_proof` refuses
  to make one (ValueError) for the same reason;
- two trees of one size are consistent only with an empty proof and equal roots (the roots are
  then compared as given, as transparency-dev/merkle does).

Every refusal is a ProofError naming what does not hold; no other exception escapes a verifier
for any int sizes and bytes hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from invsync.agent.errors import InvsyncError

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32  # SHA-256
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(InvsyncError):
    """A Merkle proof does not prove what it was offered for."""

    hint = (
        "The log served a proof that does not match its signed checkpoint: keep the checkpoints "
        "and proofs as evidence and tell the exchange operator; do not trust that log view."
    )


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 6962 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes (RFC 6962 §2.1); the empty tree's is SHA-256 of nothing."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) for the tree of all `leaves` (RFC 6962 §2.1.1)."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of size {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[n]) from the tree of `old_size` leaves to that of all `leaves`
    (RFC 6962 §2.1.2), for 0 < old_size <= n; empty when old_size == n."""
    if old_size == 0:
        raise ValueError("a consistency proof from the empty tree proves nothing")
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"no tree of size {old_size} in a tree of size {len(leaves)}")
    if old_size == len(leaves):
        return []
    return _subproof(leaves, old_size, complete=True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Raise ProofError unless `proof` shows leaf hash `leaf` at `index` of the tree of `size`
    leaves whose root is `expected_root` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < size:
        raise ProofError(f"inclusion: index {index} is outside a tree of size {size}")
    what = f"inclusion of entry {index} in the tree of size {size}"
    _check_hash(what, "the leaf hash", leaf)
    _check_hash(what, "the root hash", expected_root)
    _check_path(what, proof)
    if _root_from_inclusion(leaf, index, size, proof, what) != expected_root:
        raise ProofError(f"inclusion: entry {index} is not in the tree of size {size}")


def _check_hash(what: str, name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what}: {name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_path(what: str, proof: Sequence[bytes]) -> None:
    for i, p in enumerate(proof):
        _check_hash(what, f"proof hash {i}", p)


def _root_from_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], what: str
) -> bytes:
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"{what}: the proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"{what}: the proof is too short")
    return r


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless `proof` shows the tree (old_size, old_root) is a prefix of the
    tree (new_size, new_root) (RFC 9162 §2.1.4.2): the log only ever appended.

    old_size must be at least 1: see the module docstring."""
    what = f"consistency {old_size} -> {new_size}"
    if old_size < 0:
        raise ProofError(f"{what}: a tree size cannot be negative")
    if new_size < old_size:
        raise ProofError(f"{what}: the log cannot shrink")
    if old_size == 0:
        raise ProofError(f"{what}: a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if proof:
            raise ProofError(f"{what}: the proof should be empty")
        if old_root != new_root:
            raise ProofError(f"{what}: two roots for one tree size: the log forked")
        return
    if not proof:
        raise ProofError(f"{what}: the proof is empty")
    _check_hash(what, "the old root hash", old_root)
    _check_hash(what, "the new root hash", new_root)
    _check_path(what, proof)
    first, second = _roots_from_consistency(old_size, new_size, old_root, proof, what)
    if first != old_root:
        raise ProofError(f"{what}: the proof does not lead to the old root")
    if second != new_root:
        raise ProofError(f"{what}: the proof does not lead to the new root")


def _roots_from_consistency(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes], what: str
) -> tuple[bytes, bytes]:
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a complete subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"{what}: the proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"{what}: the proof is too short")
    return fr, sr
