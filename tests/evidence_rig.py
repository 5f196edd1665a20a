"""A real exchange history for the evidence tests, made with the in-process exchange rig, and the
tools to export it and to forge what a dishonest server could.

`history` runs two parties through several snapshot versions, a key rotation, reports and
co-signatures. `PartyLog` reads the log as one party would over gRPC (entries of other pairings
withheld); `MemoryLog` serves any list of leaves with checkpoints signed by a given key, which is
how the tests forge a re-signed log.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from invsync.agent.evidence.bundle import Bundle, Scope
from invsync.agent.evidence.directory import write_bundle
from invsync.agent.evidence.export import ExportPlan, LogSource, export_bundle
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig, pae, sign
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, build_payload
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server.evidence_export import StoreLog
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, SERVER, Rig

HOUR = timedelta(hours=1)
ALL = Scope()


@dataclass(frozen=True)
class History:
    """What `history` exchanged: the key jprs rotated to, and the version each party reached."""

    new_jprs: SigningKey
    size: int


def history(rig: Rig, records: list[CertRecord], new_jprs: SigningKey) -> History:
    """secom v1, jprs v1 (two certificates fewer), both co-sign; jprs v2 announces `new_jprs`
    (signed by both keys) and lists one more certificate, both co-sign; jprs v3, signed by the
    new key alone, lists every certificate, both co-sign; secom v2. Each push an hour after the
    last, and each makes a new report."""
    secom1 = _push(rig, _payload(rig, "secom", 1, records), "secom")
    jprs1 = _push(rig, _payload(rig, "jprs", 1, records[2:]), "jprs")
    _cosign_latest(rig, rig.keys.jprs)
    announcing = _payload(
        rig, "jprs", 2, records[1:], jprs1, next_signing_key=new_jprs.public.spki_der
    )
    jprs2 = _push(rig, announcing, "jprs", [rig.keys.jprs, new_jprs])
    _cosign_latest(rig, new_jprs)
    _push(rig, _payload(rig, "jprs", 3, records, jprs2), "jprs", [new_jprs])
    _cosign_latest(rig, new_jprs)
    _push(rig, _payload(rig, "secom", 2, records, secom1), "secom")
    return History(new_jprs, rig.store.log_size())


def _payload(
    rig: Rig,
    party: str,
    version: int,
    records: list[CertRecord],
    previous: bytes = b"",
    next_signing_key: bytes = b"",
) -> bytes:
    """`party`'s snapshot `version` of exactly `records`, following the payload `previous`."""
    return build_payload(
        party=party,
        pairing=PAIRING,
        role=SUBORDINATE if party == "jprs" else ROOT,
        version=version,
        issued_at=rig.clock.now,
        expires_at=rig.clock.now + timedelta(days=1),
        records=records,
        previous_digest=hashlib.sha256(previous).digest() if previous else b"",
        next_signing_key=next_signing_key,
    )


def _push(rig: Rig, data: bytes, party: str, keys: list[SigningKey] | None = None) -> bytes:
    rig.clock.now += HOUR
    rig.push(sign(SNAPSHOT_PAYLOAD_TYPE, data, keys or [rig.keys.of(party)]), party)
    return data


def _cosign_latest(rig: Rig, jprs: SigningKey) -> None:
    """Both parties co-sign the latest report, jprs with the key it has in force."""
    stored = rig.exchange.report("secom", PAIRING, "")
    for party, key in (("jprs", jprs), ("secom", rig.keys.secom)):
        sig = Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)))
        rig.exchange.add_signature(party, PAIRING, stored.report_id, sig)


def plan(rig: Rig, scope: Scope = ALL, every_checkpoint: bool = True) -> ExportPlan:
    keys = rig.keys
    return ExportPlan(
        scope=scope,
        server_keys=(keys.server.public,),
        party_keys={"jprs": (keys.jprs.public,), "secom": (keys.secom.public,)},
        created_at=NOW,
        every_checkpoint=every_checkpoint,
    )


def export_rig(rig: Rig, out: Path, scope: Scope = ALL) -> Bundle:
    """The server's export of the rig's log (through its storage), written to `out`."""
    bundle = export_bundle(StoreLog(rig.store), plan(rig, scope))
    write_bundle(bundle, out)
    return bundle


class PartyLog:
    """The log as `party` reads it from the exchange: others' entries withheld."""

    def __init__(self, rig: Rig, party: str) -> None:
        self.exchange, self.party = rig.exchange, party

    def checkpoint(
        self,
        tree_size: int = 0,
        proof_from: int = 0,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> bytes:
        return self.exchange.checkpoint(self.party, tree_size)

    def log_range(self, start: int, end: int) -> LogRange:
        return self.exchange.log_entries(self.party, start, end)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self.exchange.inclusion_proof(self.party, index, tree_size)

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return self.exchange.consistency_proof(self.party, first_size, second_size)


class MemoryLog:
    """Any `leaves`, served as a log whose checkpoints `key` signs as the rig's server; or,
    given a function of the tree size, the keys it names for each checkpoint."""

    def __init__(
        self, leaves: list[bytes], key: SigningKey | Callable[[int], Sequence[SigningKey]]
    ) -> None:
        self.hashes = [tlog.leaf_hash(leaf) for leaf in leaves]
        self.leaves = leaves
        self.signers = key if callable(key) else lambda size: [key]

    def checkpoint(
        self,
        tree_size: int = 0,
        proof_from: int = 0,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> bytes:
        size = tree_size or len(self.leaves)
        head = Checkpoint(SERVER, size, tlog.root(self.hashes[:size]))
        first, *also = self.signers(size)
        return sign_checkpoint(head, SERVER, first, *also)

    def log_range(self, start: int, end: int) -> LogRange:
        return LogRange.of(start, self.leaves[start:end], lambda leaf: True)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return tlog.inclusion_proof(self.hashes[:tree_size], index)

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return tlog.consistency_proof(self.hashes[:second_size], first_size)


def forge(rig: Rig, leaves: list[bytes], out: Path) -> None:
    """A bundle of `leaves` re-signed by the rig's server key: only content checks catch it."""
    source: LogSource = MemoryLog(leaves, rig.keys.server)
    write_bundle(export_bundle(source, plan(rig)), out)


def leaves_of(bundle: Bundle) -> list[bytes]:
    return [e.leaf for e in bundle.entries]


def entry_of(leaf: bytes) -> pb.LogEntry:
    return pb.LogEntry.FromString(leaf)


def envelope_of(leaf: bytes) -> Envelope:
    return Envelope.from_json_dict(json.loads(entry_of(leaf).envelope))


def with_envelope(leaf: bytes, env: Envelope, **fields: object) -> bytes:
    """`leaf` holding `env` (canonical form, as the server writes it) and other `fields`."""
    msg = entry_of(leaf)
    msg.envelope = json.dumps(env.to_json_dict(), sort_keys=True, separators=(",", ":")).encode()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg.SerializeToString()


def snapshot_signed_by(leaf: bytes, keys: list[SigningKey]) -> bytes:
    """A SNAPSHOT leaf whose payload is re-signed by `keys` alone."""
    return with_envelope(leaf, sign(SNAPSHOT_PAYLOAD_TYPE, envelope_of(leaf).payload, keys))
