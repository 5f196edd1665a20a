"""Check 9: every receipt acknowledges a snapshot that is in the log where it says, and every
snapshot has exactly one receipt.

A receipt (already verified as the server's, check 7) must name the party, pairing and version
of its entry and the bundle's server; its `log_index` must be the entry of that very snapshot,
before the receipt, with the payload digest it names; and its checkpoint, when it carries one,
must be signed by the pinned server key, include that entry, and have the root the verified log
has at that size (another root would be a fork shown to the party alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from invsync.agent.errors import InvsyncError
from invsync.agent.evidence.entries import K, LoggedEntry
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.evidence.logproof import VerifiedLog, open_note_in_force
from invsync.agent.evidence.trust import Trust
from invsync.agent.exchange.receipt import Receipt, decode_receipt
from invsync.agent.exchange.server_keyring import ServerKeyRing

CHECK = "receipt"


def check_receipts(
    entries: Sequence[LoggedEntry], log: VerifiedLog, trust: Trust
) -> dict[int, Receipt]:
    """Check 9; every decoded receipt by its entry index."""
    by_index = {item.index: item for item in entries}
    receipts: dict[int, Receipt] = {}
    acknowledged: dict[int, int] = {}  # snapshot entry -> its receipt's entry
    for item in entries:
        if item.kind != K.LOG_ENTRY_KIND_RECEIPT:
            continue
        receipt = _decode(item)
        _check_names(item, receipt, trust.server)
        _check_target(item, receipt, by_index.get(receipt.log_index))
        if receipt.log_index in acknowledged:
            raise CheckFailed(
                CHECK,
                entry(item.index),
                f"a second receipt for the snapshot at entry {receipt.log_index} (the first is "
                f"at entry {acknowledged[receipt.log_index]})",
            )
        _check_checkpoint(item, receipt, log, trust)
        acknowledged[receipt.log_index] = item.index
        receipts[item.index] = receipt
    _every_snapshot_acknowledged(entries, acknowledged)
    return receipts


def _decode(item: LoggedEntry) -> Receipt:
    try:
        return decode_receipt(item.envelope)
    except InvsyncError as e:
        raise CheckFailed(CHECK, entry(item.index), str(e)) from e


def _check_names(item: LoggedEntry, receipt: Receipt, server: str) -> None:
    named = (receipt.party, receipt.pairing, receipt.version)
    if named != (item.party, item.pairing, item.version):
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"the entry is the receipt of {_snap(item.party, item.pairing, item.version)}, the "
            f"signed receipt names {_snap(*named)}",
        )
    if receipt.server != server:
        raise CheckFailed(
            CHECK, entry(item.index), f"the receipt names server {receipt.server!r}, not {server!r}"
        )


def _check_target(item: LoggedEntry, receipt: Receipt, target: LoggedEntry | None) -> None:
    """The receipt's log_index is its snapshot's entry, before it, with the digest it names."""
    name = _snap(receipt.party, receipt.pairing, receipt.version)
    claimed = (receipt.party, receipt.pairing, receipt.version)
    if (
        receipt.log_index >= item.index
        or target is None
        or target.kind != K.LOG_ENTRY_KIND_SNAPSHOT
        or (target.party, target.pairing, target.version) != claimed
    ):
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"the receipt for {name} names entry {receipt.log_index}, which is not that snapshot "
            "in the log before it",
        )
    if hashlib.sha256(target.envelope.payload).digest() != receipt.payload_sha256:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"the receipt for {name} names digest {receipt.payload_sha256.hex()[:16]}, not that "
            f"of the snapshot at entry {target.index}",
        )


def _check_checkpoint(item: LoggedEntry, receipt: Receipt, log: VerifiedLog, trust: Trust) -> None:
    if not receipt.checkpoint:
        return
    where = entry(item.index)
    keys = trust.server_keys(CHECK, where)
    ring = trust.server_ring or ServerKeyRing({key.keyid: key for key in keys})
    head = open_note_in_force(receipt.checkpoint, trust.server, ring, where, check=CHECK)
    if not receipt.log_index < head.size <= log.head.size:
        raise CheckFailed(
            CHECK,
            where,
            f"the receipt's checkpoint (size {head.size}) does not include entry "
            f"{receipt.log_index} within the bundle's log (size {log.head.size})",
        )
    if head.root != log.root_at(head.size):
        raise CheckFailed(
            CHECK,
            where,
            f"the receipt's checkpoint of size {head.size} has another root than the log: the "
            "party was shown a forked log",
        )


def _every_snapshot_acknowledged(
    entries: Sequence[LoggedEntry], acknowledged: Mapping[int, int]
) -> None:
    for item in entries:
        if item.kind == K.LOG_ENTRY_KIND_SNAPSHOT and item.index not in acknowledged:
            raise CheckFailed(
                CHECK,
                entry(item.index),
                f"the log holds no receipt for {_snap(item.party, item.pairing, item.version)}",
            )


def _snap(party: str, pairing: str, version: int) -> str:
    return f"the snapshot of {party} version {version} in pairing {pairing}"
