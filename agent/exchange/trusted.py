"""One pairing's trusted state, after python-tuf's `TrustedMetadataSet` (DESIGN §6a).

Everything the exchange server serves an agent about a pairing passes through that pairing's one
`PairingTrust`, and nothing else decides what the agent believes: the receipts for its pushes, its
peer's snapshots, the server's reports and the last log checkpoint it verified. The object does
no I/O: the caller fetches, hands the envelope in, and persists `state` in the same transaction as
what it guards (`agent.store.agent_store`). Every input is checked in this order; the first broken
check raises its own error (`agent.exchange.rejections`), and a refused input changes nothing:

1. the payload type is the one asked for                                 PayloadTypeError
2. a signature verifies over the exact bytes with a PINNED key, before anything parses them:
   receipts and reports: the server's configured keys                    ServerSignatureError
   peer snapshots: the peer's configured keys and the rotations they signed
   (`agent.exchange.keyring`)                   UntrustedSignerError, BadSignatureError, ...
   never a key that a document lists about itself
3. the payload parses                                       MalformedInput, MalformedSnapshot
   (a peer snapshot's party, pairing, role, key schedule and records are checked here too,
   by `agent.exchange.acceptance.verify_peer_rotation`)
4. it agrees with what is already trusted:
   a receipt names this party, the pairing, the version and SHA-256 pushed  ReceiptMismatchError
   a report is of this pairing, under the id the server gave it             ReportMismatchError
   a peer snapshot is the version asked for                          PeerVersionMismatchError
   the peer's current snapshot is not older than the last verified one     PeerRollbackError
   nor another one with the same version                               PeerEquivocationError
   then, the current one only, not expired                                      ExpiredError
   (expiry comes after the version: an old snapshot is a rollback, expired or not)
   a log checkpoint is not of a smaller tree than the last one        CheckpointRollbackError

A peer rollback or equivocation carries a `peer-rollback` finding (`agent.model.findings`) for
the caller to record: no reconciliation of two snapshots can see it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from invsync.agent.errors import InvsyncError, SignatureError
from invsync.agent.exchange.acceptance import PairingPolicy, PartyPolicy, verify_peer_rotation
from invsync.agent.exchange.envelope import Envelope, verify_or_raise
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE, Receipt, decode_receipt
from invsync.agent.exchange.rejections import (
    CheckpointRollbackError,
    ExpiredError,
    MalformedInput,
    PayloadTypeError,
    PeerEquivocationError,
    PeerRollbackError,
    PeerVersionMismatchError,
    ReceiptMismatchError,
    ReportMismatchError,
    ServerSignatureError,
)
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.model.findings import PEER_ROLLBACK, Finding, make_finding
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.times import rfc3339

__all__ = [
    "DocumentFormat",
    "LogCheckpoint",
    "PairingTrust",
    "PeerSnapshot",
    "TrustedState",
    "Verified",
]


class PairingDocument(Protocol):
    """What the trusted state reads of a parsed report: its pairing and its id."""

    @property
    def pairing(self) -> str: ...

    @property
    def report_id(self) -> str: ...


R = TypeVar("R", bound=PairingDocument)


@dataclass(frozen=True)
class DocumentFormat(Generic[R]):
    """How the server's reports are told apart and read. The caller gives it because the report
    layer (`agent.report.body`) sits above this one."""

    payload_type: str
    parse: Callable[[bytes], R]  # raises an InvsyncError for a malformed payload


@dataclass(frozen=True)
class Verified:
    """A snapshot verified here: its version and the SHA-256 (lowercase hex) of its payload."""

    version: int
    digest: str


@dataclass(frozen=True)
class LogCheckpoint:
    """The last log checkpoint the caller verified, signature and consistency: held, not judged."""

    size: int
    root_hash: bytes
    note: bytes  # the signed note, as received


@dataclass(frozen=True)
class TrustedState:
    """What one pairing's trusted state holds; a plain value, persisted by the caller."""

    own: Verified | None = None  # our latest snapshot the server receipted
    peer: Verified | None = None  # the peer's latest snapshot verified here
    receipts: Mapping[int, Envelope] = field(default_factory=dict)  # our version -> receipt
    checkpoint: LogCheckpoint | None = None


@dataclass(frozen=True)
class PeerSnapshot:
    """A verified peer snapshot, and the key rotation it carried (persist it with the state)."""

    snapshot: Snapshot
    rotation: Rotation | None


class PairingTrust(Generic[R]):
    """The trusted state of one pairing of `party` (see the module docstring)."""

    def __init__(
        self,
        *,
        party: str,
        pairing: PairingPolicy,
        server_keys: Mapping[str, VerifyKey],
        peer: PartyPolicy,
        reports: DocumentFormat[R],
        rotations: Sequence[Rotation] = (),
        state: TrustedState | None = None,
    ) -> None:
        if {party, peer.party} != {pairing.root, pairing.subordinate}:
            raise ValueError(f"{party} and {peer.party} are not the parties of {pairing.name}")
        self.party = party
        self.pairing = pairing
        self._server_keys = dict(server_keys)
        self._peer = peer
        self._reports = reports
        self._rotations = tuple(rotations)
        self._state = state or TrustedState()

    @property
    def state(self) -> TrustedState:
        return self._state

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        """The peer's rotations trusted here: those given, and those verified since."""
        return self._rotations

    def update_receipt(self, env: Envelope, *, version: int, payload: bytes) -> Receipt:
        """The server's receipt for our snapshot `version` with these exact `payload` bytes."""
        _check_type(env, RECEIPT_PAYLOAD_TYPE, f"receipt for version {version}")
        self._check_server_signature(env, "receipt")
        receipt = _decoded_receipt(env)
        digest = hashlib.sha256(payload).hexdigest()
        self._check_receipt(receipt, version, digest)
        own = _later(self._state.own, Verified(version, digest))
        receipts = {**self._state.receipts, version: env}
        self._state = replace(self._state, own=own, receipts=receipts)
        return receipt

    def verify_report(self, env: Envelope, *, report_id: str = "") -> R:
        """A report of the pairing the server signed, parsed only once its signature verified;
        `report_id`, when given, is the id the server served it under."""
        _check_type(env, self._reports.payload_type, f"report {report_id[:12]}".strip())
        self._check_server_signature(env, "report")
        try:
            body = self._reports.parse(env.payload)
        except InvsyncError as e:
            raise MalformedInput(f"report of pairing {self.pairing.name!r}: {e}") from e
        if body.pairing != self.pairing.name or report_id not in ("", body.report_id):
            raise ReportMismatchError(
                f"the server served report {report_id or '(latest)'} of pairing "
                f"{self.pairing.name!r}, but it is report {body.report_id} of {body.pairing!r}"
            )
        return body

    def update_peer(self, env: Envelope, *, version: int, now: datetime | None) -> PeerSnapshot:
        """The peer's current snapshot: `version` (0: whichever the server calls its latest), not
        older than the last one verified, nor another one of that version, and not expired at
        `now` (None: a look that shows an expired one as such, as `invsync status` does)."""
        verified = self._peer_snapshot(env, version)
        header = verified.snapshot.header
        self._check_not_rolled_back(verified.snapshot)
        if now is not None and now >= header.expires_at:
            raise ExpiredError(f"expired at {rfc3339(header.expires_at)} (now {rfc3339(now)})")
        seen = Verified(header.version, verified.snapshot.payload_sha256)
        self._adopt(verified, peer=_later(self._state.peer, seen))
        return verified

    def verify_earlier_peer(self, env: Envelope, *, version: int) -> PeerSnapshot:
        """An earlier snapshot of the peer (the one before the compared one, or one that may
        announce a key): verified and checked against the last verified one, which it does not
        replace. Its expiry does not matter."""
        verified = self._peer_snapshot(env, version)
        last = self._state.peer
        if last is not None and version == last.version:
            self._check_same_digest(verified.snapshot, last)
        self._adopt(verified, peer=self._state.peer)
        return verified

    def check_peer_absent(self) -> None:
        """A report says the peer has sent no snapshot: refused once one was verified here."""
        last = self._state.peer
        if last is None:
            return
        message = (
            f"a report says {self._peer.party} has sent no snapshot of pairing "
            f"{self.pairing.name!r}, but its version {last.version} ({last.digest[:16]}) was "
            "verified here: the exchange server rolled the peer back"
        )
        raise PeerRollbackError(message, self._finding(message, party=""))

    def replace_checkpoint(self, checkpoint: LogCheckpoint) -> None:
        """Hold `checkpoint`, which the caller verified (its signature, and its consistency with
        the one held); a smaller tree than the one held is refused whatever the caller says."""
        held = self._state.checkpoint
        if held is not None and checkpoint.size < held.size:
            raise CheckpointRollbackError(
                f"pairing {self.pairing.name!r}: checkpoint of tree size {checkpoint.size} after "
                f"one of size {held.size} was verified"
            )
        self._state = replace(self._state, checkpoint=checkpoint)

    # The checks, in their order

    def _check_server_signature(self, env: Envelope, what: str) -> None:
        try:
            verify_or_raise(env, self._server_keys, who=f"the exchange server ({what})")
        except SignatureError as e:
            raise ServerSignatureError(str(e)) from e

    def _check_receipt(self, receipt: Receipt, version: int, digest: str) -> None:
        pushed = (self.party, self.pairing.name, version, digest)
        named = (receipt.party, receipt.pairing, receipt.version, receipt.payload_sha256.hex())
        fields = ("party", "pairing", "version", "payload_sha256")
        wrong = [
            f"{name} {got!r} (pushed {want!r})"
            for name, got, want in zip(fields, named, pushed, strict=True)
            if got != want
        ]
        if wrong:
            raise ReceiptMismatchError(
                f"the receipt for {self.party}'s snapshot version {version} of pairing "
                f"{self.pairing.name!r} names {', '.join(wrong)}"
            )

    def _peer_snapshot(self, env: Envelope, version: int) -> PeerSnapshot:
        """Type, signature by the peer's pinned or rotated keys, parsing, the version asked for."""
        _check_type(env, SNAPSHOT_PAYLOAD_TYPE, f"{self._peer.party}'s snapshot")
        accepted = verify_peer_rotation(
            env, peer=self._peer, pairing=self.pairing, now=None, rotations=self._rotations
        )
        served = accepted.snapshot.header.version
        if version and served != version:
            raise PeerVersionMismatchError(
                f"asked for {self._peer.party}'s snapshot version {version} of pairing "
                f"{self.pairing.name!r}, the server served version {served}"
            )
        return PeerSnapshot(accepted.snapshot, accepted.rotation)

    def _check_not_rolled_back(self, snapshot: Snapshot) -> None:
        last = self._state.peer
        if last is None or snapshot.header.version > last.version:
            return
        if snapshot.header.version == last.version:
            self._check_same_digest(snapshot, last)
            return
        message = (
            f"the exchange server served {self._peer.party}'s snapshot version "
            f"{snapshot.header.version} of pairing {self.pairing.name!r} after version "
            f"{last.version} ({last.digest[:16]}) was verified here: rollback or freeze"
        )
        raise PeerRollbackError(message, self._finding(message, party=""))

    def _check_same_digest(self, snapshot: Snapshot, last: Verified) -> None:
        if snapshot.payload_sha256 == last.digest:
            return
        peer = self._peer.party
        message = (
            f"{peer}'s snapshot version {last.version} of pairing {self.pairing.name!r} was "
            f"verified here as {last.digest[:16]}; the exchange server now serves "
            f"{snapshot.payload_sha256[:16]}: {peer} signed two snapshots with one version"
        )
        # Only the peer's key could sign both: the peer must say which one it meant.
        raise PeerEquivocationError(message, self._finding(message, party=peer))

    def _adopt(self, verified: PeerSnapshot, *, peer: Verified | None) -> None:
        """The state after a peer snapshot passed every check: nothing changes before."""
        if verified.rotation is not None:
            self._rotations = (*self._rotations, verified.rotation)
        self._state = replace(self._state, peer=peer)

    def _finding(self, message: str, *, party: str) -> Finding:
        return make_finding(PEER_ROLLBACK, sha256="", subject="", party=party, message=message)


def _check_type(env: Envelope, expected: str, what: str) -> None:
    """First of all: a signature over another payload type says nothing about this one."""
    if env.payload_type != expected:
        raise PayloadTypeError(f"{what}: payload type {env.payload_type!r} is not {expected!r}")


def _decoded_receipt(env: Envelope) -> Receipt:
    try:
        return decode_receipt(env)
    except InvsyncError as e:
        raise MalformedInput(f"receipt: {e}") from e


def _later(held: Verified | None, seen: Verified) -> Verified:
    return seen if held is None or seen.version >= held.version else held
