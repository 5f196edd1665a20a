"""An agent's side of the exchange's log for tests: its store, its trusted state and its log
watch, talking to a real in-process exchange (tests/exchange_rig.py) through a client that
answers the log calls as the gRPC client would, unless a test tampers with one of them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from invsync.agent.daemon.log_reading import take_receipt
from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.restore import Restore
from invsync.agent.daemon.rotation import OwnKeys
from invsync.agent.exchange.acceptance import PartyPolicy
from invsync.agent.exchange.client import NotFoundYet
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.rejections import NotFound
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.exchange.trusted import PairingTrust
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import ReportBody
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, Keys, Rig, payload
from tests.trusted_helpers import POLICY, REPORTS

ISSUED = NOW - timedelta(hours=1)
EXPIRES = NOW + timedelta(days=1)


class RigClient:
    """`party`'s log calls, answered by the rig's exchange; `tampered[name]` replaces one."""

    def __init__(self, rig: Rig, party: str) -> None:
        self.rig = rig
        self.party = party
        self.tampered: dict[str, Callable[..., Any]] = {}

    def checkpoint(
        self,
        tree_size: int = 0,
        proof_from: int = 0,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> bytes:
        return self._answer("checkpoint", self.rig.exchange.checkpoint, tree_size)  # type: ignore[no-any-return]

    def log_range(self, start: int, end: int) -> LogRange:
        return self._answer("log_range", self.rig.exchange.log_entries, start, end)  # type: ignore[no-any-return]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        return self._answer("inclusion_proof", self.rig.exchange.inclusion_proof, index, tree_size)  # type: ignore[no-any-return]

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        real = self.rig.exchange.consistency_proof
        return self._answer("consistency_proof", real, first_size, second_size)  # type: ignore[no-any-return]

    def _answer(self, name: str, real: Callable[..., Any], *args: int) -> Any:
        if name in self.tampered:
            return self.tampered[name](*args)
        try:
            return real(self.party, *args)
        except NotFound as e:  # as the gRPC client raises it
            raise NotFoundYet(f"rig: {e}") from e


@dataclass
class AgentSide:
    """One party's agent, as far as the log is concerned."""

    party: str
    keys: Keys
    store: AgentStore
    trust: PairingTrust[ReportBody]
    watch: LogWatch
    client: RigClient
    sent: dict[int, bytes] = field(default_factory=dict)

    def push(self, rig: Rig, records: list[CertRecord], version: int, **changes: Any) -> bytes:
        """Build, sign and push our `version` to `rig`, keep it sent with its receipt as the
        agent does (pending, then the receipt through the trusted state); its payload."""
        previous = hashlib.sha256(self.sent[version - 1]).digest() if version > 1 else b""
        data = payload(records, self.party, version=version, previous_digest=previous, **changes)
        env = sign_snapshot(data, self.keys.of(self.party))
        sigs = [(s.keyid, s.sig) for s in env.signatures]
        self.store.record_sent_snapshot(
            PAIRING, version, data, env.payload_type, sigs, ISSUED, EXPIRES, pending=True
        )
        receipt = Envelope.from_pb(pb.Envelope.FromString(rig.push(env, self.party)))
        with self.trust.staged() as staged:
            take_receipt(self.client, staged, receipt, version=version, payload=data)
            self.store.record_receipt(PAIRING, version, staged.state, NOW)
        self.sent[version] = data
        return data


def agent_side(path: Path, rig: Rig, keys: Keys, party: str) -> AgentSide:
    """`party`'s agent with a fresh database at `path`, pinning the rig's server key."""
    peer = "jprs" if party == "secom" else "secom"
    server_keys = {keys.server.keyid: keys.server.public}
    store = AgentStore(path)
    trust = PairingTrust(
        party=party,
        pairing=POLICY,
        server_keys=server_keys,
        peer=PartyPolicy(peer, {keys.of(peer).keyid: keys.of(peer).public}),
        reports=REPORTS,
        state=store.trusted_state(PAIRING),
    )
    watch = LogWatch(party=party, store=store, clock=lambda: NOW)
    return AgentSide(party, keys, store, trust, watch, RigClient(rig, party))


def restorer(side: AgentSide, keys: Keys) -> Restore:
    """SECOM's restore (`agent.daemon.restore`) over `side`'s store and log watch."""
    return Restore(
        party="secom",
        keys=OwnKeys(keys.secom),
        store=side.store,
        watch=side.watch,
        clock=lambda: NOW,
    )
