"""An in-process exchange (no gRPC) over a real SQLite store, real keys and real certificates:
the rig tests of the exchange's domain logic, its reports and its schedule share."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.merkle import records_root
from invsync.agent.exchange.snapshot import build_payload, to_chunks
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.server.exchange import Exchange
from invsync.server.reconciling import ReportMaker
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb

NOW = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)
PAIRING = "secom-jprs"
SERVER = "test-exchange"
CHUNK = 4096  # small chunks, so every push is really streamed in several parts


@dataclass(frozen=True)
class Keys:
    server: SigningKey
    secom: SigningKey
    jprs: SigningKey
    stranger: SigningKey

    def of(self, party: str) -> SigningKey:
        key: SigningKey = getattr(self, party)
        return key


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    exchange: Exchange
    store: ServerStore
    clock: Clock
    keys: Keys
    pushed: dict[tuple[str, int], bytes] = field(default_factory=dict)

    def snapshots(self) -> int:
        return self.store.db.table("snapshots").count

    def reports(self) -> int:
        return self.store.db.table("reports").count

    def signatures(self) -> int:
        return self.store.db.table("report_signatures").count

    def push(self, env: Envelope, tls_party: str | None) -> bytes:
        return self.exchange.push(tls_party, to_chunks(env, CHUNK))


def make_rig(
    path: Path,
    keys: Keys,
    max_snapshot_bytes: int = 1 << 20,
    max_version_step: int = acc.DEFAULT_MAX_VERSION_STEP,
) -> Rig:
    store = ServerStore(path)
    clock = Clock()
    policy = acc.AcceptancePolicy(
        parties={
            name: acc.PartyPolicy(name, {keys.of(name).keyid: keys.of(name).public})
            for name in ("secom", "jprs")
        },
        pairings={PAIRING: acc.PairingPolicy(PAIRING, root="secom", subordinate="jprs")},
        max_version_step=max_version_step,
    )
    reports = ReportMaker(
        server_name=SERVER, store=store, policy=policy, signing_key=keys.server, clock=clock
    )
    exchange = Exchange(
        name=SERVER,
        store=store,
        policy=policy,
        signing_key=keys.server,
        reports=reports,
        max_snapshot_bytes=max_snapshot_bytes,
        clock=clock,
    )
    return Rig(exchange, store, clock, keys)


def payload(records: list[CertRecord], party: str = "jprs", **changes: object) -> bytes:
    """A snapshot payload of `party` (version 1, issued an hour before NOW) with `changes`."""
    fields: dict[str, object] = {
        "party": party,
        "pairing": PAIRING,
        "role": SUBORDINATE if party == "jprs" else ROOT,
        "version": 1,
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=1),
        # jprs lists two certificates fewer than secom: the report has findings to show.
        "records": records[2:] if party == "jprs" else records,
    }
    fields.update(changes)
    return build_payload(**fields)  # type: ignore[arg-type]


def edited(data: bytes, edit: Callable[[pb.SnapshotPayload], None]) -> bytes:
    """A hand-edited payload: what build_payload never produces, a broken sender might."""
    msg = pb.SnapshotPayload.FromString(data)
    root = msg.header.records_root
    edit(msg)
    if msg.header.records_root == root and not msg.header.delta:
        # An edit of the records keeps records_root true to them, so that the check the test
        # aims at is the one that fires; a test of records_root itself edits it.
        msg.header.records_root = records_root(
            (hashlib.sha256(r.certificate_der).digest(), r.SerializeToString(deterministic=True))
            for r in msg.records
        )
    serialized: bytes = msg.SerializeToString(deterministic=True)
    return serialized
