"""Check 7: every envelope in the log is signed by a key in force where it stands.

Walking the entries in log order: a snapshot must be signed by a key in force for its party,
pairing and version (`KeyRing.keys_for`), before its payload is decoded; a key announcement must
repeat its snapshot, signed by a key in force and by the announced key
(`agent.exchange.keyring.check_key_schedule`), and only from there on is the new key in force;
receipts, reports and chain resets must be signed by a pinned server key; a co-signature by a key
in force for its party. A key used before the entry that announces it is named as such. A chain
reset takes the rotations its party announced above the version it continues from out of force,
as the server did.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from invsync.agent.evidence.entries import K, LoggedEntry
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.evidence.trust import Trust
from invsync.agent.exchange import envelope
from invsync.agent.exchange.chain_reset import (
    CHAIN_RESET_PAYLOAD_TYPE,
    ChainReset,
    MalformedChainReset,
    check_names,
    decode_chain_reset,
)
from invsync.agent.exchange.keyring import KeyRing, check_key_schedule
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE
from invsync.agent.exchange.rejections import MalformedSnapshot, SnapshotRejected
from invsync.agent.exchange.server_key import SERVER_KEY_PAYLOAD_TYPE
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
    Base,
    decode_header,
    decode_payload,
)
from invsync.agent.model.snapshot import Snapshot, SnapshotHeader
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE

CHECK = "signature"
_PAYLOAD_TYPES = {
    K.LOG_ENTRY_KIND_SNAPSHOT: SNAPSHOT_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT: SNAPSHOT_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_RECEIPT: RECEIPT_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_REPORT: REPORT_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_REPORT_SIGNATURE: REPORT_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_CHAIN_RESET: CHAIN_RESET_PAYLOAD_TYPE,
    K.LOG_ENTRY_KIND_SERVER_KEY: SERVER_KEY_PAYLOAD_TYPE,
}


@dataclass(frozen=True)
class Signed:
    """What check 7 decoded once the signatures held, by entry index."""

    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    resets: dict[int, ChainReset] = field(default_factory=dict)
    # The same snapshots by payload digest: what a delta later in the log builds on.
    by_digest: dict[str, Snapshot] = field(default_factory=dict)


def check_signatures(entries: Sequence[LoggedEntry], trust: Trust) -> Signed:
    """Check 7 over every entry in log order; the decoded snapshots and chain resets.
    Each rotation a key announcement proves is added to `trust` as it is reached, and each
    chain reset takes those it sets aside out again."""
    announcements = {
        hashlib.sha256(e.announced_key).hexdigest(): e.index
        for e in entries
        if e.kind == K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT
    }
    signed = Signed()
    for item in entries:
        _check_payload_type(item)
        if item.kind == K.LOG_ENTRY_KIND_SNAPSHOT:
            snapshot = _snapshot(item, trust, announcements, signed.by_digest)
            signed.snapshots[item.index] = signed.by_digest[snapshot.payload_sha256] = snapshot
        elif item.kind == K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT:
            _announcement(item, trust, signed.snapshots)
        elif item.kind == K.LOG_ENTRY_KIND_REPORT_SIGNATURE:
            _cosignature(item, trust, announcements)
        elif item.kind == K.LOG_ENTRY_KIND_SERVER_KEY:
            _server_key(item, trust)
        else:
            _server_signed(item, trust)
            if item.kind == K.LOG_ENTRY_KIND_CHAIN_RESET:
                signed.resets[item.index] = _chain_reset(item, trust)
    return signed


def _chain_reset(item: LoggedEntry, trust: Trust) -> ChainReset:
    where = entry(item.index)
    try:
        reset = decode_chain_reset(item.envelope, where)
    except MalformedChainReset as e:
        raise CheckFailed(CHECK, where, str(e).removeprefix(f"{where}: ")) from e
    try:
        check_names(reset, (item.party, item.pairing, item.version), where)
    except MalformedChainReset as e:
        raise CheckFailed(CHECK, where, str(e).removeprefix(f"{where}: ")) from e
    trust.drop_rotations(item.index, reset.party, reset.pairing, reset.continues_from)
    return reset


def _check_payload_type(item: LoggedEntry) -> None:
    expected = _PAYLOAD_TYPES[item.kind]
    if item.envelope.payload_type != expected:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"a {item.kind_name} of payload type {item.envelope.payload_type!r}, not {expected!r}",
        )


def _snapshot(
    item: LoggedEntry,
    trust: Trust,
    announcements: dict[str, int],
    earlier: dict[str, Snapshot],
) -> Snapshot:
    where = entry(item.index)
    ring = trust.ring(item.party, CHECK, where, before=item.index)
    keys = ring.keys_for(item.pairing, item.version)
    if not envelope.verify(item.envelope, keys).threshold_met(1):
        raise CheckFailed(CHECK, where, _not_in_force(item, ring, keys, announcements))
    snapshot = _decode(item, earlier)
    if snapshot.header.next_signing_key:
        _require_announcement(item, snapshot, keys, announcements)
    return snapshot


def _decode(item: LoggedEntry, earlier: dict[str, Snapshot]) -> Snapshot:
    """The snapshot of a verified envelope, which must be the one the entry names; a delta is
    rebuilt on the snapshot its previous_digest names, logged before it (agent.exchange.delta),
    and checked against its signed header."""
    try:
        snapshot = decode_payload(item.envelope.payload, base=_base(item, earlier))
    except SnapshotRejected as e:  # a delta's rebuilt set can fail its root or repeat a record
        raise CheckFailed(CHECK, entry(item.index), str(e)) from e
    _check_named(item, snapshot.header)
    return snapshot


def _named_header(item: LoggedEntry) -> SnapshotHeader:
    """The header of a verified envelope, which must be the one the entry names."""
    try:
        header = decode_header(item.envelope.payload)
    except MalformedSnapshot as e:
        raise CheckFailed(CHECK, entry(item.index), str(e)) from e
    _check_named(item, header)
    return header


def _check_named(item: LoggedEntry, header: SnapshotHeader) -> None:
    claimed = (item.party, item.pairing, item.version)
    if (header.party, header.pairing, header.version) != claimed:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"the entry names {_snap(*claimed)}, the signed header "
            f"{_snap(header.party, header.pairing, header.version)}",
        )


def _base(item: LoggedEntry, earlier: dict[str, Snapshot]) -> Base | None:
    header = decode_header(item.envelope.payload)
    if not header.delta:
        return None
    base = earlier.get(header.previous_digest.hex())
    if base is None or (base.header.party, base.header.pairing) != (item.party, item.pairing):
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"{_snap(item.party, item.pairing, item.version)} is a delta on "
            f"{header.previous_digest.hex()[:16] or '(nothing)'}, which no snapshot of "
            f"{item.party} in {item.pairing!r} before it in the log is",
        )
    return Base(base.payload_sha256, base.full)


def _require_announcement(
    item: LoggedEntry, snapshot: Snapshot, keys: dict[str, VerifyKey], announcements: dict[str, int]
) -> None:
    """A snapshot announcing a key not yet in force is followed by its KEY_ANNOUNCEMENT entry."""
    keyid = hashlib.sha256(snapshot.header.next_signing_key).hexdigest()
    if keyid not in keys and announcements.get(keyid, -1) < item.index:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"{_snap(item.party, item.pairing, item.version)} announces key {keyid[:16]}, but "
            "the log holds no key announcement of it after the snapshot",
        )


def _announcement(item: LoggedEntry, trust: Trust, snapshots: dict[int, Snapshot]) -> None:
    where = entry(item.index)
    name = _snap(item.party, item.pairing, item.version)
    digest = _sha256(item.envelope.payload)
    if not any(s.payload_sha256 == digest for s in snapshots.values()):
        raise CheckFailed(CHECK, where, f"announces a key in {name}, not in the log before it")
    header = _named_header(item)
    if header.next_signing_key != item.announced_key:
        raise CheckFailed(CHECK, where, "the announced key is not the one the header announces")
    ring = trust.ring(item.party, CHECK, where, before=item.index)
    try:
        rotation = check_key_schedule(item.envelope, header, ring)
    except SnapshotRejected as e:
        raise CheckFailed(CHECK, where, str(e)) from e
    if rotation is None:
        raise CheckFailed(CHECK, where, f"{name} announces a key already in force")
    trust.add_rotation(item.index, rotation)


def _server_key(item: LoggedEntry, trust: Trust) -> None:
    """A server key announcement counts only as check 2 followed it: opened in the checkpoint
    of the tree ending with it, which the key it replaces signed."""
    ring = trust.server_ring
    if ring is None or item.index not in {r.index for r in ring.chain()}:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            "a server key announcement the bundle does not prove: it holds no checkpoint of the "
            "tree ending with it, signed by the key in force there",
        )


def _server_signed(item: LoggedEntry, trust: Trust) -> None:
    where = entry(item.index)
    keys = trust.server_ids(CHECK, where, at=item.index)
    if not envelope.verify(item.envelope, keys).threshold_met(1):
        raise CheckFailed(
            CHECK,
            where,
            f"the {item.kind_name} is not signed by a pinned key of the server {trust.server!r} "
            f"(signed by: {_signers(item)})",
        )


def _cosignature(item: LoggedEntry, trust: Trust, announcements: dict[str, int]) -> None:
    where = entry(item.index)
    ring = trust.ring(item.party, CHECK, where, before=item.index)
    keys = ring.keys_for(item.pairing)
    if not envelope.verify(item.envelope, keys).threshold_met(1):
        raise CheckFailed(CHECK, where, _not_in_force(item, ring, keys, announcements))


def _not_in_force(
    item: LoggedEntry, ring: KeyRing, keys: dict[str, VerifyKey], announcements: dict[str, int]
) -> str:
    """Why no signature verified: a key announced only later, a retired key, or none known."""
    what = f"the {item.kind_name} of {item.party} in pairing {item.pairing}"
    for sig in item.envelope.signatures:
        later = announcements.get(sig.keyid, -1)
        if later > item.index:
            return (
                f"{what} is signed by key {sig.keyid[:16]}, which {item.party} announces only at "
                f"entry {later}: a key is not in force before its announcement"
            )
        retired = ring.retired_by(item.pairing, sig.keyid)
        if retired is not None:
            return (
                f"{what} is signed by key {sig.keyid[:16]}, which {item.party} retired at "
                f"version {retired.version}"
            )
    in_force = ", ".join(k[:16] for k in sorted(keys)) or "none"
    return (
        f"{what} is signed by no key in force (signed by: {_signers(item)}; in force: {in_force})"
    )


def _signers(item: LoggedEntry) -> str:
    return ", ".join(s.keyid[:16] for s in item.envelope.signatures) or "nobody"


def _snap(party: str, pairing: str, version: int) -> str:
    return f"the snapshot of {party} version {version} in pairing {pairing}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
