"""The transparency log's Merkle tree (agent/exchange/tlog.py) against the transparency-dev/merkle
vectors (tests/fixtures/merkle, PROVENANCE.md there), and Hypothesis properties over random trees:
every proof the module makes verifies, and every tampered one is refused with ProofError.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.exchange import tlog
from invsync.agent.exchange.tlog import ProofError
from tests.paths import FIXTURES

MERKLE = FIXTURES / "merkle"
# What transparency-dev/merkle's testdata/inclusion and testdata/consistency held at the
# commit in PROVENANCE.md; SHA256SUMS lists every file, so none can go missing or be renamed
# away from the parametrization unnoticed.
INCLUSION_CASES = 98
CONSISTENCY_CASES = 98

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _manifest() -> dict[str, str]:
    lines = (MERKLE / "SHA256SUMS").read_text().splitlines()
    return {path: digest for digest, path in (line.split("  ", 1) for line in lines)}


def _vector_files(kind: str) -> list[Path]:
    # Every file under the folder, whatever its name: a stray or misnamed file fails to load
    # as a case below instead of being skipped.
    return sorted(p for p in (MERKLE / kind).rglob("*") if p.is_file())


def _b64(value: str | None) -> bytes:
    # Go's encoding/json writes a nil []byte as null and any other as standard base64.
    return b"" if value is None else base64.b64decode(value, validate=True)


def _case_id(path: Path, kind: str) -> str:
    return path.relative_to(MERKLE / kind).with_suffix("").as_posix()


def _load(path: Path) -> dict[str, Any]:
    assert path.suffix == ".json", f"{path} is not a .json vector"
    case: dict[str, Any] = json.loads(path.read_text())
    return case


INCLUSION = _vector_files("inclusion")
CONSISTENCY = _vector_files("consistency")


def test_the_fixture_files_are_exactly_those_listed_with_their_digests() -> None:
    listed = _manifest()
    present = {
        p.relative_to(MERKLE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("inclusion", "consistency", "rfc6962", "checkpoints")
        for p in (MERKLE / folder).rglob("*")
        if p.is_file()
    }
    assert present == listed


def test_every_vector_file_is_a_collected_case() -> None:
    listed = _manifest()
    assert len(INCLUSION) == INCLUSION_CASES
    assert len(CONSISTENCY) == CONSISTENCY_CASES
    assert sum(1 for p in listed if p.startswith("inclusion/")) == INCLUSION_CASES
    assert sum(1 for p in listed if p.startswith("consistency/")) == CONSISTENCY_CASES
    # Each happy path must verify and everything else must fail, as the vectors say.
    wanted = [_load(p)["wantErr"] for p in INCLUSION + CONSISTENCY]
    assert wanted.count(False) == 12


@pytest.mark.parametrize("path", INCLUSION, ids=[_case_id(p, "inclusion") for p in INCLUSION])
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    assert set(case) == {"leafIdx", "treeSize", "root", "leafHash", "proof", "desc", "wantErr"}
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        [_b64(p) for p in case["proof"] or []],
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            tlog.verify_inclusion(*args)
    else:
        tlog.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=[_case_id(p, "consistency") for p in CONSISTENCY])
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    assert set(case) == {"size1", "size2", "root1", "root2", "proof", "desc", "wantErr"}
    args = (
        case["size1"],
        case["size2"],
        _b64(case["root1"]),
        _b64(case["root2"]),
        [_b64(p) for p in case["proof"] or []],
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            tlog.verify_consistency(*args)
    else:
        tlog.verify_consistency(*args)


# The hasher's known answers and the reference tree of transparency-dev/merkle (values
# transcribed from rfc6962/rfc6962_test.go and testonly/constants.go).

HASHER = json.loads((MERKLE / "rfc6962" / "hasher.json").read_text())["cases"]
REFERENCE = json.loads((MERKLE / "rfc6962" / "reference_tree.json").read_text())
REFERENCE_LEAVES = [tlog.leaf_hash(bytes.fromhex(x)) for x in REFERENCE["leaf_inputs"]]


@pytest.mark.parametrize("case", HASHER, ids=[c["desc"] for c in HASHER])
def test_hasher_known_answer(case: dict[str, str]) -> None:
    got = {
        "empty_root": lambda: tlog.EMPTY_ROOT,
        "leaf_hash": lambda: tlog.leaf_hash(bytes.fromhex(case["leaf"])),
        "node_hash": lambda: tlog.node_hash(
            bytes.fromhex(case["left"]), bytes.fromhex(case["right"])
        ),
    }[case["function"]]()
    assert got.hex() == case["want"]


def test_hasher_separates_leaves_from_nodes_and_orders_children() -> None:
    a, b = tlog.leaf_hash(b"Hello"), tlog.leaf_hash(b"World")
    assert a != b
    assert tlog.node_hash(a, b) != tlog.leaf_hash(a + b)
    assert tlog.node_hash(a, b) != tlog.node_hash(b, a)


def test_reference_tree_roots_of_every_size() -> None:
    assert len(REFERENCE["root_hashes"]) == len(REFERENCE_LEAVES) + 1
    for size, want in enumerate(REFERENCE["root_hashes"]):
        assert tlog.root(REFERENCE_LEAVES[:size]).hex() == want


def test_reference_tree_complete_subtrees() -> None:
    for level, hashes in enumerate(REFERENCE["node_hashes"]):
        width = 1 << level
        for i, want in enumerate(hashes):
            assert tlog.root(REFERENCE_LEAVES[i * width : (i + 1) * width]).hex() == want


HAPPY_INCLUSION = [p for p in INCLUSION if _load(p)["desc"] == "happy path"]
HAPPY_CONSISTENCY = [p for p in CONSISTENCY if _load(p)["desc"] == "happy path"]


@pytest.mark.parametrize(
    "path", HAPPY_INCLUSION, ids=[_case_id(p, "inclusion") for p in HAPPY_INCLUSION]
)
def test_made_inclusion_proofs_equal_the_vectors(path: Path) -> None:
    """The happy paths are proofs in the reference tree: making them gives the same hashes."""
    case = _load(path)
    leaves = REFERENCE_LEAVES[: case["treeSize"]]
    assert leaves[case["leafIdx"]] == _b64(case["leafHash"])
    assert tlog.root(leaves) == _b64(case["root"])
    proof = tlog.inclusion_proof(leaves, case["leafIdx"])
    assert proof == [_b64(p) for p in case["proof"] or []]


@pytest.mark.parametrize(
    "path", HAPPY_CONSISTENCY, ids=[_case_id(p, "consistency") for p in HAPPY_CONSISTENCY]
)
def test_made_consistency_proofs_equal_the_vectors(path: Path) -> None:
    case = _load(path)
    leaves = REFERENCE_LEAVES[: case["size2"]]
    assert tlog.root(leaves[: case["size1"]]) == _b64(case["root1"])
    assert tlog.root(leaves) == _b64(case["root2"])
    proof = tlog.consistency_proof(leaves, case["size1"])
    assert proof == [_b64(p) for p in case["proof"] or []]


def test_happy_paths_are_all_there() -> None:
    assert (len(HAPPY_INCLUSION), len(HAPPY_CONSISTENCY)) == (5, 5)


# What the module refuses, with the message pinned.


def test_a_consistency_proof_from_the_empty_tree_is_neither_made_nor_accepted() -> None:
    with pytest.raises(ValueError, match="from the empty tree proves nothing"):
        tlog.consistency_proof(REFERENCE_LEAVES, 0)
    with pytest.raises(ProofError, match=r"consistency 0 -> 8: a consistency proof from the"):
        tlog.verify_consistency(0, 8, tlog.EMPTY_ROOT, tlog.root(REFERENCE_LEAVES), [])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: tlog.verify_inclusion(REFERENCE_LEAVES[0], 8, 8, [], bytes(32)),
            "inclusion: index 8 is outside a tree of size 8",
        ),
        (
            lambda: tlog.verify_inclusion(b"short", 0, 1, [], bytes(32)),
            "inclusion of entry 0 in the tree of size 1: the leaf hash is 5 bytes, not 32",
        ),
        (
            lambda: tlog.verify_inclusion(bytes(32), 0, 2, [bytes(31)], bytes(32)),
            "inclusion of entry 0 in the tree of size 2: proof hash 0 is 31 bytes, not 32",
        ),
        (
            lambda: tlog.verify_inclusion(bytes(32), 0, 2, [], bytes(32)),
            "inclusion of entry 0 in the tree of size 2: the proof is too short",
        ),
        (
            lambda: tlog.verify_inclusion(bytes(32), 0, 2, [bytes(32)] * 2, bytes(32)),
            "inclusion of entry 0 in the tree of size 2: the proof is too long",
        ),
        (
            lambda: tlog.verify_inclusion(bytes(32), 0, 2, [bytes(32)], bytes(32)),
            "inclusion: entry 0 is not in the tree of size 2",
        ),
        (
            lambda: tlog.verify_consistency(3, 2, bytes(32), bytes(32), []),
            "consistency 3 -> 2: the log cannot shrink",
        ),
        (
            lambda: tlog.verify_consistency(-1, 2, bytes(32), bytes(32), []),
            "consistency -1 -> 2: a tree size cannot be negative",
        ),
        (
            lambda: tlog.verify_consistency(2, 2, bytes(32), bytes(32), [bytes(32)]),
            "consistency 2 -> 2: the proof should be empty",
        ),
        (
            lambda: tlog.verify_consistency(2, 2, bytes(32), b"\x01" * 32, []),
            "consistency 2 -> 2: two roots for one tree size: the log forked",
        ),
        (
            lambda: tlog.verify_consistency(2, 3, bytes(32), bytes(32), []),
            "consistency 2 -> 3: the proof is empty",
        ),
        (
            lambda: tlog.verify_consistency(2, 3, bytes(31), bytes(32), [bytes(32)]),
            "consistency 2 -> 3: the old root hash is 31 bytes, not 32",
        ),
        (
            lambda: tlog.verify_consistency(2, 3, bytes(32), bytes(32), [bytes(32)] * 3),
            "consistency 2 -> 3: the proof is too long",
        ),
        (
            lambda: tlog.verify_consistency(3, 4, bytes(32), bytes(32), [bytes(32)]),
            "consistency 3 -> 4: the proof is too short",
        ),
        (
            lambda: tlog.verify_consistency(3, 4, bytes(32), bytes(32), [bytes(32)] * 3),
            "consistency 3 -> 4: the proof does not lead to the old root",
        ),
    ],
    ids=[
        "index-outside",
        "short-leaf",
        "short-proof-hash",
        "proof-too-short",
        "proof-too-long",
        "wrong-root",
        "shrinking",
        "negative-size",
        "same-size-nonempty-proof",
        "fork",
        "empty-proof",
        "short-old-root",
        "consistency-too-long",
        "consistency-too-short",
        "wrong-old-root",
    ],
)
def test_refusals_name_what_is_wrong(call: Callable[[], None], message: str) -> None:
    with pytest.raises(ProofError) as refused:
        call()
    assert str(refused.value) == message


def test_making_a_proof_outside_the_tree_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="leaf 8 is not in a tree of size 8"):
        tlog.inclusion_proof(REFERENCE_LEAVES, 8)
    with pytest.raises(ValueError, match="no tree of size 9 in a tree of size 8"):
        tlog.consistency_proof(REFERENCE_LEAVES, 9)


# Hypothesis: random trees of distinct entries (a tree with two equal leaves legitimately has
# two indices for one leaf hash, so "wrong index" would not be wrong there).


def _mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 written out literally, independent of tlog.root."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return tlog.node_hash(_mth(leaves[:k]), _mth(leaves[k:]))


TREES = st.lists(st.binary(max_size=6), min_size=1, max_size=70, unique=True).map(
    lambda entries: [tlog.leaf_hash(e) for e in entries]
)
HASH = st.binary(min_size=32, max_size=32)


def _flip(value: bytes, position: int, mask: int) -> bytes:
    data = bytearray(value)
    data[position % len(data)] ^= mask
    return bytes(data)


@PROPERTY
@given(leaves=TREES, data=st.data())
def test_every_made_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    tree = leaves[:size]
    assert tlog.root(tree) == _mth(tree)
    tlog.verify_inclusion(tree[index], index, size, tlog.inclusion_proof(tree, index), _mth(tree))


@PROPERTY
@given(leaves=TREES, data=st.data())
def test_every_made_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    new = data.draw(st.integers(1, len(leaves)), label="new size")
    old = data.draw(st.integers(1, new), label="old size")
    proof = tlog.consistency_proof(leaves[:new], old)
    tlog.verify_consistency(old, new, _mth(leaves[:old]), _mth(leaves[:new]), proof)


INCLUSION_TAMPERING = [
    "flip-proof-byte",
    "flip-leaf-byte",
    "flip-root-byte",
    "drop-hash",
    "extra-hash",
    "wrong-index",
    "index-outside",
    "wrong-size-with-its-root",
    "truncate-hash",
]


@PROPERTY
@given(leaves=TREES, data=st.data(), how=st.sampled_from(INCLUSION_TAMPERING))
def test_a_tampered_inclusion_proof_is_refused(
    leaves: list[bytes], data: st.DataObject, how: str
) -> None:
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    tree = leaves[:size]
    leaf, proof, head = tree[index], tlog.inclusion_proof(tree, index), _mth(tree)
    position = data.draw(st.integers(0, 1 << 16), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    if how == "flip-proof-byte":
        if not proof:
            return
        i = position % len(proof)
        proof[i] = _flip(proof[i], data.draw(st.integers(0, 31)), mask)
    elif how == "flip-leaf-byte":
        leaf = _flip(leaf, position, mask)
    elif how == "flip-root-byte":
        head = _flip(head, position, mask)
    elif how == "drop-hash":
        if not proof:
            return
        del proof[position % len(proof)]
    elif how == "extra-hash":
        extra = data.draw(st.sampled_from([*proof, leaf, head]) | HASH, label="extra")
        proof.insert(position % (len(proof) + 1), extra)
    elif how == "wrong-index":
        if size == 1:
            return
        index = data.draw(st.sampled_from([j for j in range(size) if j != index]), label="j")
    elif how == "index-outside":
        index = data.draw(st.integers(size, size + 1000) | st.integers(-1000, -1))
    elif how == "wrong-size-with-its-root":
        others = [n for n in range(index + 1, len(leaves) + 1) if n != size]
        if not others:
            return
        size = data.draw(st.sampled_from(others), label="wrong size")
        head = _mth(leaves[:size])
    elif how == "truncate-hash":
        target = data.draw(st.sampled_from(["leaf", "root", *(["proof"] if proof else [])]))
        cut = data.draw(st.integers(0, 31))
        if target == "leaf":
            leaf = leaf[:cut]
        elif target == "root":
            head = head[:cut]
        else:
            i = position % len(proof)
            proof[i] = proof[i][:cut]
    with pytest.raises(ProofError):
        tlog.verify_inclusion(leaf, index, size, proof, head)


CONSISTENCY_TAMPERING = [
    "flip-proof-byte",
    "flip-old-root-byte",
    "flip-new-root-byte",
    "drop-hash",
    "extra-hash",
    "wrong-old-size-with-its-root",
    "wrong-new-size-with-its-root",
    "swap-roots",
]


@PROPERTY
@given(leaves=TREES, data=st.data(), how=st.sampled_from(CONSISTENCY_TAMPERING))
def test_a_tampered_consistency_proof_is_refused(
    leaves: list[bytes], data: st.DataObject, how: str
) -> None:
    if len(leaves) < 2:
        return
    new = data.draw(st.integers(2, len(leaves)), label="new size")
    old = data.draw(st.integers(1, new - 1), label="old size")
    proof = tlog.consistency_proof(leaves[:new], old)
    old_root, new_root = _mth(leaves[:old]), _mth(leaves[:new])
    position = data.draw(st.integers(0, 1 << 16), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    if how == "flip-proof-byte":
        i = position % len(proof)
        proof[i] = _flip(proof[i], data.draw(st.integers(0, 31)), mask)
    elif how == "flip-old-root-byte":
        old_root = _flip(old_root, position, mask)
    elif how == "flip-new-root-byte":
        new_root = _flip(new_root, position, mask)
    elif how == "drop-hash":
        del proof[position % len(proof)]
    elif how == "extra-hash":
        extra = data.draw(st.sampled_from([*proof, old_root, new_root]) | HASH, label="extra")
        proof.insert(position % (len(proof) + 1), extra)
    elif how == "wrong-old-size-with-its-root":
        old = data.draw(st.sampled_from([m for m in range(1, new + 1) if m != old]), label="m")
        old_root = _mth(leaves[:old])
    elif how == "wrong-new-size-with-its-root":
        new = data.draw(
            st.sampled_from([n for n in range(old, len(leaves) + 1) if n != new]), label="n"
        )
        new_root = _mth(leaves[:new])
    elif how == "swap-roots":
        old_root, new_root = new_root, old_root
    with pytest.raises(ProofError):
        tlog.verify_consistency(old, new, old_root, new_root, proof)


SIZES = st.integers(-3, 1 << 70) | st.integers(-3, 200)
GARBAGE_PATH = st.lists(st.binary(max_size=40) | HASH, max_size=12)


@PROPERTY
@given(
    leaf=st.binary(max_size=40) | HASH,
    index=SIZES,
    size=SIZES,
    proof=GARBAGE_PATH,
    head=st.binary(max_size=40) | HASH,
)
def test_garbage_inclusion_input_raises_only_proof_error(
    leaf: bytes, index: int, size: int, proof: list[bytes], head: bytes
) -> None:
    try:
        tlog.verify_inclusion(leaf, index, size, proof, head)
    except ProofError:
        return
    # Accepted: only possible for a proof that is right, which random bytes never are except
    # for the one-leaf tree whose root is the leaf.
    assert (index, size, proof, leaf) == (0, 1, [], head)


@PROPERTY
@given(
    old=SIZES,
    new=SIZES,
    old_root=st.binary(max_size=40) | HASH,
    new_root=st.binary(max_size=40) | HASH,
    proof=GARBAGE_PATH,
)
def test_garbage_consistency_input_raises_only_proof_error(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    try:
        tlog.verify_consistency(old, new, old_root, new_root, proof)
    except ProofError:
        return
    assert (old == new > 0, proof, old_root) == (True, [], new_root)
