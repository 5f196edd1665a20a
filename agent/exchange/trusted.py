"""One pairing's trusted state, after python-tuf's `TrustedMetadataSet` (DESIGN §6a).

Everything the exchange server serves an agent about a pairing passes through that pairing's one
`PairingTrust`, and nothing else decides what the agent believes: the receipts for its pushes, its
peer's snapshots, the server's reports and the last log checkpoint it verified. The object does
no I/O: the caller fetches, hands the envelope in, and persists `state` in the same transaction as
what it guards (`agent.store.agent_store`). Every input is checked in this order; the first broken
check raises its own error (`agent.exchange.rejections`), and a refused input changes nothing:

1. the payload type is the one asked for                                 PayloadTypeError
2. a signature verifies over the exact bytes with a PINNED key, before anything parses them:
   receipts and reports: the server's configured keys, or a key it announced in its log and
   the agent followed (`agent.exchange.server_keyring`, in the SharedLog)  ServerSignatureError
   (a report names no place in the log: any of them; the evidence verifier judges its entry)
   peer snapshots: the peer's configured keys and the rotations they signed
   (`agent.exchange.keyring`)                   UntrustedSignerError, BadSignatureError, ...
   never a key that a document lists about itself
3. the payload parses                                       MalformedInput, MalformedSnapshot
   (a peer snapshot's party, pairing, role, key schedule and records are checked here too,
   by `agent.exchange.acceptance.verify_peer_rotation`)
4. it agrees with what is already trusted:
   a receipt is signed by the server key in force at its place in the log RetiredServerKeyError
   a receipt names this party, the pairing, the version and SHA-256 pushed  ReceiptMismatchError
   a report is of this pairing, under the id the server gave it             ReportMismatchError
   a peer snapshot is the version asked for                          PeerVersionMismatchError
   the peer's current snapshot is not older than the last verified one     PeerRollbackError
   nor another one with the same version                               PeerEquivocationError
   then, the current one only, not expired                                      ExpiredError
   (expiry comes after the version: an old snapshot is a rollback, expired or not)
   a log checkpoint is not of a smaller tree than the last one        CheckpointRollbackError
   a receipt's checkpoint opens with the server key in force for its size (a key retired
   before it, alone: RetiredServerKeyError) under the log's origin (the configured
   `server.name`, else the first verified receipt's server, adopted once), its tree holds the
   receipt's log index, and it is consistent with the checkpoint held, by a proof the caller
   fetched (`receipt_proof_sizes` says which)                           LogInconsistentError

The log checkpoint and its origin are one per agent (per server), shared by all its pairings
(`SharedLog`): two pairings cannot be shown two logs without one of them failing a proof.
`staged()` gives a copy to verify into; the caller commits its state and only then is it
adopted, so a failed write never leaves memory ahead of the database.

A peer rollback or equivocation carries a `peer-rollback` finding (`agent.model.findings`) for
the caller to record: no reconciliation of two snapshots can see it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from invsync.agent.errors import InvsyncError, SignatureError
from invsync.agent.exchange import tlog
from invsync.agent.exchange.acceptance import PairingPolicy, PartyPolicy, verify_peer_rotation
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.exchange.checkpoint import Checkpoint
from invsync.agent.exchange.envelope import Envelope, verify_or_raise
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.receipt import (
    RECEIPT_PAYLOAD_TYPE,
    Receipt,
    check_in_tree,
    decode_receipt,
)
from invsync.agent.exchange.rejections import (
    CheckpointRollbackError,
    ExpiredError,
    LogInconsistentError,
    MalformedInput,
    PayloadTypeError,
    PeerEquivocationError,
    PeerRollbackError,
    PeerVersionMismatchError,
    ReceiptMismatchError,
    ReportMismatchError,
    RetiredServerKeyError,
    ServerSignatureError,
)
from invsync.agent.exchange.server_keyring import (
    ServerKeyRing,
    ServerRotation,
    open_checkpoint_in_force,
)
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.model.findings import LOG_INCONSISTENT, PEER_ROLLBACK, Finding, make_finding
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.times import rfc3339

log = logging.getLogger("invsync.agent")

__all__ = [
    "DocumentFormat",
    "LogCheckpoint",
    "PairingTrust",
    "PeerSnapshot",
    "SharedLog",
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
    """A snapshot verified here: its version and the SHA-256 (lowercase hex) of its payload;
    a digest of "" is a chain reset's floor, a version known without its snapshot."""

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
    checkpoint: LogCheckpoint | None = None  # the agent's one checkpoint (SharedLog)
    origin: str = ""  # the log's origin and checkpoint key name: the server's name


class SharedLog:
    """The one log an agent watches: its origin, last verified checkpoint and the server's keys
    (pinned, and the rotations followed in the log), shared by every pairing's trusted state, so
    that each pairing checks against what any of them verified."""

    def __init__(
        self,
        origin: str = "",
        checkpoint: LogCheckpoint | None = None,
        ring: ServerKeyRing | None = None,
    ) -> None:
        self.origin = origin
        self.checkpoint = checkpoint
        self.ring = ring  # None: the first trusted state sets it from its server keys

    def copy(self) -> SharedLog:
        return SharedLog(self.origin, self.checkpoint, self.ring)


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
        server_keys: Mapping[str, VerifyKey] | ServerKeyRing,
        peer: PartyPolicy,
        reports: DocumentFormat[R],
        rotations: Sequence[Rotation] = (),
        state: TrustedState | None = None,
        shared: SharedLog | None = None,
    ) -> None:
        if {party, peer.party} != {pairing.root, pairing.subordinate}:
            raise ValueError(f"{party} and {peer.party} are not the parties of {pairing.name}")
        self.party = party
        self.pairing = pairing
        self._server_keys = server_keys
        self._peer = peer
        self._reports = reports
        self._rotations = tuple(rotations)
        self._state = state or TrustedState()
        held = self._state
        self._log = shared or SharedLog(held.origin, held.checkpoint)
        if self._log.ring is None:
            ring = server_keys
            self._log.ring = ring if isinstance(ring, ServerKeyRing) else ServerKeyRing(dict(ring))

    @property
    def state(self) -> TrustedState:
        """The pairing's state, with the agent's one log origin and checkpoint."""
        return replace(self._state, checkpoint=self._log.checkpoint, origin=self._log.origin)

    @contextmanager
    def staged(self) -> Iterator[PairingTrust[R]]:
        """A copy to verify into; adopted only when the block (the caller's commit of its
        state included) ends without an error: memory never runs ahead of the database."""
        copy = PairingTrust(
            party=self.party,
            pairing=self.pairing,
            server_keys=self._server_keys,
            peer=self._peer,
            reports=self._reports,
            rotations=self._rotations,
            state=self._state,
            shared=self._log.copy(),
        )
        yield copy
        self._state, self._rotations = copy._state, copy._rotations
        self._log.origin, self._log.checkpoint = copy._log.origin, copy._log.checkpoint
        self._log.ring = copy._log.ring

    @property
    def server_ring(self) -> ServerKeyRing:
        """The exchange server's keys: pinned, and the rotations followed in its log."""
        assert self._log.ring is not None  # set in __init__
        return self._log.ring

    def adopt_server_rotation(self, rotation: ServerRotation) -> None:
        """The server's key rotation, announced in an entry the caller proved included in a
        checkpoint (signed by a key in force, consistent with the one held) and opened with
        `agent.exchange.server_key.open_server_key`: the new key signs from there on. The
        checkpoint held stays: the log watch checks the entries after it, those before the
        announcement included, before it holds a larger one."""
        self._log.ring = self.server_ring.with_rotation(rotation)

    @property
    def rotations(self) -> tuple[Rotation, ...]:
        """The peer's rotations trusted here: those given, and those verified since."""
        return self._rotations

    def receipt_proof_sizes(
        self, env: Envelope, *, version: int, payload: bytes
    ) -> tuple[int, int] | None:
        """The consistency proof `update_receipt` needs between the receipt's checkpoint and the
        one held, as (smaller, larger) tree sizes for the caller to fetch; None: none needed.
        The receipt passes every check before it is asked."""
        _, checkpoint = self._opened_receipt(env, version, payload)
        held = self._log.checkpoint
        if held is None or 0 in (held.size, checkpoint.size) or held.size == checkpoint.size:
            return None
        small, large = sorted((held.size, checkpoint.size))
        return small, large

    def update_receipt(
        self, env: Envelope, *, version: int, payload: bytes, proof: Sequence[bytes] = ()
    ) -> Receipt:
        """The server's receipt for our snapshot `version` with these exact `payload` bytes; its
        checkpoint consistent with the one held by `proof` (see `receipt_proof_sizes`)."""
        receipt, checkpoint = self._opened_receipt(env, version, payload)
        self._check_receipt_log(receipt, checkpoint, proof)
        if not self._log.origin:
            log.warning(
                "party=%s adopting %r, the first verified receipt's server, as the log's origin: "
                "set server.name in the configuration to pin it",
                self.party,
                receipt.server,
            )
            self._log.origin = receipt.server
        digest = hashlib.sha256(payload).hexdigest()
        own = _later(self._state.own, Verified(version, digest))
        receipts = {**self._state.receipts, version: env}
        self._state = replace(self._state, own=own, receipts=receipts)
        return receipt

    def verify_report(self, env: Envelope, *, report_id: str = "", made_now: bool = True) -> R:
        """A report of the pairing the server signed, parsed only once its signature verified;
        `report_id`, when given, is the id the server served it under.

        A report served to act on now (`made_now`: the latest, the one to co-sign) must be
        signed by a key in force from now on: one the server retired, which may have leaked,
        signs nothing new. A report met as history (`made_now=False`: one a report signed by
        the key in force names by its id) may be signed by any key the server signed with."""
        what = f"report {report_id[:12]}".strip()
        _check_type(env, self._reports.payload_type, what)
        signers = self._check_server_signature(env, "report")
        if made_now:
            self.server_ring.check_in_force(signers, None, f"the server's {what} served now")
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

    def apply_chain_reset(self, reset: ChainReset) -> None:
        """The exchange operator reset the peer's chain in this pairing (a CHAIN_RESET entry
        whose server signature and inclusion the caller verified): the peer's snapshots above
        the version it continues from, and the key rotations they carried, stop counting here.
        The peer is then held at that version, digest unknown (`Verified.digest` ""), so the
        reset lowers what is trusted to the version it names and no further. A reset that does
        not name the version verified here among those it set aside is LogInconsistentError:
        the server would be rolling the peer back under cover of a reset. A reset of another
        party or pairing changes nothing."""
        if (reset.party, reset.pairing) != (self._peer.party, self.pairing.name):
            return
        peer = self._state.peer
        if peer is None or peer.version <= reset.continues_from:
            return
        if peer.version not in reset.superseded:
            message = (
                f"pairing {reset.pairing!r}: a chain reset of {reset.party} continues from "
                f"version {reset.continues_from} but does not set aside version {peer.version}, "
                "verified here: a rollback of the peer under cover of a reset"
            )
            finding = make_finding(
                LOG_INCONSISTENT, sha256="", subject="", party="", message=message
            )
            raise LogInconsistentError(message, finding)
        floor = Verified(reset.continues_from, "") if reset.continues_from else None
        self._state = replace(self._state, peer=floor)
        self._rotations = tuple(
            r
            for r in self._rotations
            if (r.party, r.pairing) != (reset.party, reset.pairing)
            or r.version <= reset.continues_from
        )

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
        held = self._log.checkpoint
        if held is not None and checkpoint.size < held.size:
            raise CheckpointRollbackError(
                f"pairing {self.pairing.name!r}: checkpoint of tree size {checkpoint.size} after "
                f"one of size {held.size} was verified"
            )
        self._log.checkpoint = checkpoint

    # The checks, in their order

    def _opened_receipt(
        self, env: Envelope, version: int, payload: bytes
    ) -> tuple[Receipt, Checkpoint]:
        _check_type(env, RECEIPT_PAYLOAD_TYPE, f"receipt for version {version}")
        signers = self._check_server_signature(env, "receipt")
        receipt = _decoded_receipt(env)
        # Logged as the entry after its snapshot's: signed by the key in force there.
        what = f"the receipt for {self.party}'s version {version}"
        self.server_ring.check_in_force(signers, receipt.log_index + 2, what)
        self._check_receipt(receipt, version, hashlib.sha256(payload).hexdigest())
        return receipt, self._receipt_checkpoint(receipt)

    def _receipt_checkpoint(self, receipt: Receipt) -> Checkpoint:
        """The receipt's checkpoint: signed by a pinned key under the log's origin, its tree
        holding the receipt's entry. A server that keeps a log always sends one."""
        where = f"the receipt for {self.party}'s version {receipt.version}"
        origin = self._log.origin or receipt.server
        if receipt.server != origin:
            raise self._log_error(
                f"{where} names server {receipt.server!r}, the log watched here is {origin!r}"
            )
        if not receipt.checkpoint:
            raise self._log_error(f"{where} carries no log checkpoint")
        try:
            checkpoint = open_checkpoint_in_force(receipt.checkpoint, origin, self.server_ring)
            check_in_tree(receipt, checkpoint)
        except RetiredServerKeyError:
            raise
        except InvsyncError as e:
            raise self._log_error(f"{where}: {e}") from e
        return checkpoint

    def _check_receipt_log(
        self, receipt: Receipt, checkpoint: Checkpoint, proof: Sequence[bytes]
    ) -> None:
        """The receipt's checkpoint and the held one are of one log: equal, or the smaller a
        prefix of the larger."""
        held = self._log.checkpoint
        if held is None or 0 in (held.size, checkpoint.size):
            return
        (small, small_root), (large, large_root) = sorted(
            [(held.size, held.root_hash), (checkpoint.size, checkpoint.root)]
        )
        try:
            tlog.verify_consistency(small, large, small_root, large_root, proof)
        except tlog.ProofError as e:
            raise self._log_error(
                f"the receipt for {self.party}'s version {receipt.version} carries a checkpoint "
                f"of size {checkpoint.size} not consistent with the one of size {held.size} "
                f"verified here ({e})"
            ) from e

    def _log_error(self, detail: str) -> LogInconsistentError:
        message = f"pairing {self.pairing.name!r}: {detail}"
        finding = make_finding(LOG_INCONSISTENT, sha256="", subject="", party="", message=message)
        return LogInconsistentError(message, finding)

    def _check_server_signature(self, env: Envelope, what: str) -> tuple[str, ...]:
        """A signature by a key the server ever signed with (where it stands in the log is
        checked once the payload says); the key ids that verified."""
        try:
            result = verify_or_raise(
                env, self.server_ring.known(), who=f"the exchange server ({what})"
            )
        except SignatureError as e:
            raise ServerSignatureError(str(e)) from e
        return result.verified_keyids

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
        if snapshot.payload_sha256 == last.digest or not last.digest:
            return  # "": a chain reset's floor, whose digest was never verified here
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
