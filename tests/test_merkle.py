"""The records digest: RFC 6962 Merkle Tree Hash over sorted 32-byte identities."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest

from invsync.agent.exchange.merkle import merkle_root, records_digest


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(data: bytes) -> bytes:
    return h(b"\x00" + data)


def node(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def rfc6962_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 written out literally, as an independent reference."""
    n = len(leaves)
    if n == 0:
        return h(b"")
    if n == 1:
        return leaf(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return node(rfc6962_mth(leaves[:k]), rfc6962_mth(leaves[k:]))


IDS = [bytes([i]) * 32 for i in range(1, 10)]  # sorted ascending already


def test_empty() -> None:
    assert merkle_root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_one_leaf() -> None:
    assert merkle_root(IDS[:1]) == h(b"\x00" + b"\x01" * 32)


def test_three_leaves_by_hand() -> None:
    a, b, c = IDS[:3]
    # RFC 6962: split 3 at 2, so the third leaf is carried up and joins at the root.
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c))


def test_five_leaves_by_hand() -> None:
    a, b, c, d, e = IDS[:5]
    expected = node(node(node(leaf(a), leaf(b)), node(leaf(c), leaf(d))), leaf(e))
    assert merkle_root([a, b, c, d, e]) == expected


@pytest.mark.parametrize("n", range(len(IDS) + 1))
def test_matches_rfc6962_definition(n: int) -> None:
    assert merkle_root(IDS[:n]) == rfc6962_mth(IDS[:n])


def test_order_independent() -> None:
    assert merkle_root(list(reversed(IDS))) == merkle_root(IDS) == rfc6962_mth(IDS)


def test_one_changed_leaf_changes_root() -> None:
    changed = [*IDS[:4], b"\xff" * 32, *IDS[5:]]
    assert merkle_root(changed) != merkle_root(IDS)


def test_records_digest_from_hex_identities() -> None:
    hexes = [i.hex().upper() for i in IDS]
    assert records_digest(hexes) == merkle_root(IDS)
