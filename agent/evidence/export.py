"""Assembling an evidence bundle from a log, whoever serves it: the exchange over the agent's
client (`remote.py`), or the server's own database (server/evidence_export.py).

The exporter reads the latest checkpoint (the tree size it claims), fetches
every entry of that tree (checking each against its leaf hash), keeps in full those of the scope
and the leaf hashes of the rest, then the checkpoints, a consistency proof between each two
consecutive ones and an inclusion proof of each kept entry in the latest. Before the bundle is
returned, checks 2 to 5 of `verify` run over it with the exporter's pinned server keys (and the
keys the server announced in its log since, followed from them): a log that does not verify is
never written as evidence. The server's key announcements are kept whatever the scope: every
reader needs them to verify what the server signed after them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError
from invsync.agent.evidence.bundle import (
    Bundle,
    BundleEntry,
    BundleKeys,
    CheckpointFile,
    ConsistencyProof,
    RotationRecord,
    Scope,
    checkpoint_name,
)
from invsync.agent.evidence.failures import CheckFailed, ExportError
from invsync.agent.evidence.logproof import verify_log
from invsync.agent.exchange.checkpoint import Checkpoint, claimed_checkpoint
from invsync.agent.exchange.keys import VerifyKey, verify_key_from_spki_der
from invsync.agent.exchange.log_entry import logged_envelope, parse_log_entry
from invsync.agent.exchange.logrange import LogRange
from invsync.v1 import invsync_pb2 as pb

MAX_RANGE = 256  # entries per request: the server's cap (server.exchange.MAX_LOG_ENTRIES)


class LogSource(Protocol):
    """Where the log is read from; `agent.exchange.client.ExchangeClient` is one."""

    def checkpoint(self, tree_size: int = 0) -> bytes: ...

    def log_range(self, start: int, end: int) -> LogRange: ...

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]: ...

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]: ...


@dataclass(frozen=True)
class ExportPlan:
    """What to export: whose entries, which public keys, and which checkpoints."""

    scope: Scope
    server_keys: tuple[VerifyKey, ...]  # the exporter's pinned server keys
    party_keys: Mapping[str, tuple[VerifyKey, ...]]
    created_at: datetime
    every_checkpoint: bool = False  # True: one per tree size; else one after each kept entry


def check_pairing(config_path: Path, pairing: str | None, known: Iterable[str], whose: str) -> None:
    """ExportError unless `pairing` (when given) is one of `known`, the pairings of `whose`
    configuration ("this agent", "this server"), named in the message with the file."""
    names = sorted(known)
    if pairing is not None and pairing not in names:
        listed = ", ".join(names) or "none"
        raise ExportError(f"{config_path}: {pairing!r} is not a pairing of {whose} ({listed})")


def export_bundle(source: LogSource, plan: ExportPlan) -> Bundle:
    """The bundle of the log `source` serves, verified (checks 2 to 5) as `plan` pins."""
    server, head = claimed_latest(source.checkpoint(0), plan.server_keys)
    entries = fetch_entries(source, head.size, plan.scope)
    kept = [e.index for e in entries if not e.withheld]
    sizes = (
        range(1, head.size + 1)
        if plan.every_checkpoint
        else sorted({i + 1 for i in kept} | {head.size})
    )
    logged = Bundle(
        server=server,
        scope=plan.scope,
        created_at=plan.created_at,
        entries=entries,
        checkpoints=_checkpoints(source, sizes),
        consistency=tuple(
            ConsistencyProof(a, b, tuple(source.consistency_proof(a, b)))
            for a, b in pairwise(sizes)
        ),
        inclusion_size=head.size,
        inclusion={i: tuple(source.inclusion_proof(i, head.size)) for i in kept},
        keys=BundleKeys(plan.server_keys, {}),
    )
    try:
        verified = verify_log(logged, plan.server_keys)  # before anything is written
    except CheckFailed as e:
        raise ExportError(f"what the log served does not verify: {e}") from e
    server_keys = tuple(verified.server_ring.known().values())
    return replace(logged, keys=_keys(plan, entries, server_keys))


def claimed_latest(note: bytes, keys: Sequence[VerifyKey]) -> tuple[str, Checkpoint]:
    """The server's name and the checkpoint `note` claims (an invsync server signs under its
    name as origin and key name): only the tree to fetch, which `verify_log` then verifies
    with a key in force, and this checkpoint with it."""
    if not keys:
        raise ExportError("the log's latest checkpoint does not verify: no server key is pinned")
    claimed = claimed_checkpoint(note)
    if claimed is None:
        raise ExportError("the log's latest checkpoint does not verify: it is no signed note")
    return claimed.origin, claimed


def fetch_entries(source: LogSource, size: int, scope: Scope) -> tuple[BundleEntry, ...]:
    """Every index below `size`: the entry when served and in scope, else its leaf hash."""
    entries: list[BundleEntry] = []
    while len(entries) < size:
        start = len(entries)
        answer = source.log_range(start, min(start + MAX_RANGE, size))
        answer.check()
        if not len(answer):
            raise ExportError(f"the server answered no entry from {start} (the log has {size})")
        entries += [_kept(start + n, e, h, scope) for n, (e, h) in enumerate(_pairs(answer))]
    return tuple(entries[:size])


def _pairs(answer: LogRange) -> Iterable[tuple[bytes, bytes]]:
    return zip(answer.entries, answer.leaf_hashes, strict=True)


def _kept(index: int, leaf: bytes, leaf_hash: bytes, scope: Scope) -> BundleEntry:
    if leaf and _in_scope(leaf, scope):
        return BundleEntry(index, leaf=leaf)
    return BundleEntry(index, leaf_hash=leaf_hash)


def _in_scope(leaf: bytes, scope: Scope) -> bool:
    try:
        entry = pb.LogEntry.FromString(leaf)
    except DecodeError:
        return scope.covers("")  # kept out of a pairing's scope; named if exported whole
    return entry.kind == pb.LOG_ENTRY_KIND_SERVER_KEY or scope.covers(entry.pairing)


def _checkpoints(source: LogSource, sizes: Iterable[int]) -> tuple[CheckpointFile, ...]:
    return tuple(
        CheckpointFile(checkpoint_name(n), source.checkpoint(size))
        for n, size in enumerate(sizes, start=1)
    )


def _keys(
    plan: ExportPlan, entries: Sequence[BundleEntry], server_keys: tuple[VerifyKey, ...]
) -> BundleKeys:
    """The plan's keys, each rotation a kept entry announces with its new key, and the server's
    keys (those the log proved too)."""
    rotations = tuple(r for r in (_rotation(e) for e in entries if not e.withheld) if r)
    parties = {name: list(keys) for name, keys in plan.party_keys.items()}
    for rotation, key in rotations:
        listed = parties.setdefault(rotation.party, [])
        if key not in listed:
            listed.append(key)
    return BundleKeys(
        server_keys,
        {name: tuple(keys) for name, keys in sorted(parties.items())},
        tuple(r for r, _ in rotations),
    )


def _rotation(item: BundleEntry) -> tuple[RotationRecord, VerifyKey] | None:
    """The rotation a KEY_ANNOUNCEMENT entry holds, as the exporter read it: history for
    people; the verifier trusts only what the log proves."""
    where = f"entry {item.index}"
    try:
        msg = parse_log_entry(item.leaf, where)
        if msg.kind != pb.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT:
            return None
        key = verify_key_from_spki_der(msg.announced_key, source=where)
        env = logged_envelope(msg, where)  # the one reader of an entry's envelope
    except InvsyncError as e:
        raise ExportError(f"{where}: not a well-formed log entry ({e})") from e
    old = tuple(sorted({s.keyid for s in env.signatures} - {key.keyid}))
    record = RotationRecord(msg.party, msg.pairing, msg.version, item.index, key.keyid, old)
    return record, key
