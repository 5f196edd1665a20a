"""Snapshot acceptance (DESIGN §5): every rule an explicit check, one typed error each, no I/O.

`accept` applies the rules to a pushed envelope in this order, and the first broken rule
raises; a rejected snapshot must write nothing:

1. identity: the TLS identity maps to an allowed party                 UnknownPartyError
2. signature, over the exact received bytes before anything parses them:
   a key of that party signed (pinned, or rotated in)                  UntrustedSignerError
   (a key pinned for another party is named as such),
   and its signature verifies (no tampered or appended bytes)           BadSignatureError
3. the payload is a snapshot (payload type, header)                     MalformedSnapshot
   version 1 to 2^63 - 1, what the store holds (checked in decoding)   VersionOutOfRangeError
   header party is the TLS identity's party                             PartyMismatchError
   the pairing exists, the party is a member, the role is its role      PairingMismatchError
   a key in force for the pairing and version signed (agent.exchange.keyring)    RetiredKeyError
   an announced next_signing_key signed too, and was never retired      KeyAnnouncementError
4. version > last accepted                                              RollbackError
   version - last accepted (0 for a first snapshot) <= max_version_step VersionJumpError
   equal version: identical bytes are an idempotent no-op (duplicate),
   other bytes are equivocation                                         EquivocationError
   previous_digest is the last accepted payload's digest                ChainError
5. not expired                                                          ExpiredError
   issued_at not beyond now + max_clock_skew                            FutureIssuedError
   expires_at after issued_at, validity within max_validity             BadValidityError
6. the records decode (every record's DER; a delta on the last accepted
   snapshot's whole set, rebuilt), records_root commits to them         MalformedSnapshot,
                                                                        DigestMismatchError
   record_count matches the records                                     CountMismatchError
   records_digest is the Merkle root of the identities                  DigestMismatchError
   no record appears twice                                              DuplicateRecordError

The errors, each with its stable `rule`, and the gRPC status the server answers with are in
`agent.exchange.rejections`. `verify_peer_snapshot` is the agent's side: the rules that need
no version state, for a snapshot of its peer fetched from the server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from invsync.agent.errors import bounded
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope, shown_keyids
from invsync.agent.exchange.keyring import KeyRing, Rotation, check_key_schedule
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.merkle import merkle_root
from invsync.agent.exchange.object_marks import ObjectMarks
from invsync.agent.exchange.rejections import (
    BadSignatureError,
    BadValidityError,
    ChainError,
    CountMismatchError,
    DigestMismatchError,
    DuplicateRecordError,
    EquivocationError,
    ExpiredError,
    FutureIssuedError,
    MalformedSnapshot,
    PairingMismatchError,
    PartyMismatchError,
    RollbackError,
    UnknownPartyError,
    UntrustedSignerError,
    VersionJumpError,
)
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
    Base,
    decode_envelope,
    decode_header,
    decode_payload,
)
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Snapshot, SnapshotHeader
from invsync.agent.times import rfc3339

__all__ = [
    "DEFAULT_MAX_VERSION_STEP",
    "AcceptancePolicy",
    "Accepted",
    "BaseLookup",
    "LastAccepted",
    "LastLookup",
    "PairingPolicy",
    "PartyPolicy",
    "RotationLookup",
    "accept",
    "verify_peer_rotation",
    "verify_peer_snapshot",
]


@dataclass(frozen=True)
class PartyPolicy:
    """A party and the snapshot-signing keys pinned for it."""

    party: str
    keys: Mapping[str, VerifyKey]  # keyid -> key


@dataclass(frozen=True)
class PairingPolicy:
    """A pairing: which party is its root (issuer) and which its subordinate."""

    name: str
    root: str
    subordinate: str

    def role_of(self, party: str) -> str | None:
        """ROOT or SUBORDINATE for a member, None for anyone else."""
        return {self.root: ROOT, self.subordinate: SUBORDINATE}.get(party)


DEFAULT_MAX_VERSION_STEP = 1 << 20


@dataclass(frozen=True)
class AcceptancePolicy:
    parties: Mapping[str, PartyPolicy]
    pairings: Mapping[str, PairingPolicy]
    max_clock_skew: timedelta = timedelta(minutes=5)  # how far issued_at may be ahead of now
    max_validity: timedelta = timedelta(days=31)  # longest allowed expires_at - issued_at
    # Largest step between consecutive versions (from 0 for a pairing's first snapshot): a far
    # jump would leave the party no version to go on with.
    max_version_step: int = DEFAULT_MAX_VERSION_STEP


@dataclass(frozen=True)
class LastAccepted:
    """The last snapshot accepted from a party for a pairing."""

    version: int
    payload_sha256: str  # lowercase hex


@dataclass(frozen=True)
class Accepted:
    snapshot: Snapshot
    duplicate: bool  # an idempotent re-push of the bytes already accepted: store nothing
    rotation: Rotation | None = None  # a new key the snapshot announced: store with it


# (party, pairing) -> the last accepted snapshot: the caller's store, read once the header
# (which names the pairing) has been verified and decoded.
LastLookup = Callable[[str, str], LastAccepted | None]
# (party, pairing, version) -> the full form of that accepted snapshot (agent.exchange.delta):
# what a delta pushed after it builds on; None if the caller cannot produce it.
BaseLookup = Callable[[str, str, int], bytes | None]
# party -> the key rotations recorded for it (agent.exchange.keyring), from the caller's store.
RotationLookup = Callable[[str], Sequence[Rotation]]


def accept(
    env: Envelope,
    *,
    tls_party: str | None,
    policy: AcceptancePolicy,
    last: LastAccepted | LastLookup | None,
    now: datetime,
    rotations: RotationLookup | None = None,
    bases: BaseLookup | None = None,
) -> Accepted:
    """Apply the acceptance rules (module docstring) in order; the first broken one raises.

    `last` is the last accepted snapshot of the header's (party, pairing), or a lookup giving
    it, because a caller cannot know the pairing before the payload was verified and decoded.
    `bases` gives the full form of an accepted snapshot, which a delta builds on; without it
    only full snapshots are accepted. A duplicate's records are not decoded.
    """
    party = _check_identity(tls_party, policy)
    ring = KeyRing(party.party, party.keys, tuple(rotations(party.party)) if rotations else ())
    _check_signature(env, ring, policy)
    header = _decode_header(env)
    _check_membership(header, party.party, policy.pairings)
    rotation = check_key_schedule(env, header, ring)
    previous = last(party.party, header.pairing) if callable(last) else last
    digest = hashlib.sha256(env.payload).hexdigest()
    if _check_version(header, digest, previous, policy.max_version_step):
        # The same bytes passed every rule when first accepted; re-checking the clock would
        # turn a lost receipt into a rejection of what the server already holds.
        return Accepted(Snapshot(header, (), digest), duplicate=True)
    _check_times(header, policy, now)
    snapshot = decode_payload(env.payload, base=_base(header, previous, bases))
    _check_records(snapshot)
    return Accepted(snapshot, duplicate=False, rotation=rotation)


def _base(
    header: SnapshotHeader, last: LastAccepted | None, bases: BaseLookup | None
) -> Base | None:
    """What a delta builds on: the last accepted snapshot, which the chain rule made sure its
    previous_digest names."""
    if not header.delta:
        return None
    if last is None:
        raise MalformedSnapshot(
            f"version {header.version} is a delta, but {bounded(header.party)!r} has no snapshot "
            f"accepted in pairing {bounded(header.pairing)!r}: its first must be full"
        )
    full = bases(header.party, header.pairing, last.version) if bases else None
    if full is None:
        raise MalformedSnapshot(
            f"version {header.version} is a delta on version {last.version}, whose whole set "
            "is not held here; push a full snapshot"
        )
    return Base(last.payload_sha256, full)


def verify_peer_snapshot(
    env: Envelope,
    *,
    peer: PartyPolicy,
    pairing: PairingPolicy | str,
    now: datetime | None,
    rotations: Sequence[Rotation] = (),
) -> Snapshot:
    """Check a peer's snapshot fetched from the server: what needs no version state.

    Signature by a key of `peer` (pinned, or rotated in by `rotations`) in force for the
    snapshot's pairing and version, decoding, party and pairing (and the peer's role when
    `pairing` is a PairingPolicy), expiry, record count, digest and duplicates. `now` is None
    for a past snapshot (the one before the compared one), whose expiry does not matter.
    """
    return verify_peer_rotation(
        env, peer=peer, pairing=pairing, now=now, rotations=rotations
    ).snapshot


def verify_peer_rotation(
    env: Envelope,
    *,
    peer: PartyPolicy,
    pairing: PairingPolicy | str,
    now: datetime | None,
    rotations: Sequence[Rotation] = (),
) -> Accepted:
    """`verify_peer_snapshot`, also giving the key rotation the snapshot announces, if any."""
    ring = KeyRing(peer.party, peer.keys, tuple(rotations))
    _require_pinned(envelope.verify(env, ring.known()), peer)
    snapshot = _decode(env)
    header = snapshot.header
    if header.party != peer.party:
        raise PartyMismatchError(
            f"peer snapshot names party {bounded(header.party)!r}, not {peer.party!r}"
        )
    if isinstance(pairing, PairingPolicy):
        _check_membership(header, peer.party, {pairing.name: pairing})
    elif header.pairing != pairing:
        raise PairingMismatchError(
            f"peer snapshot is for pairing {bounded(header.pairing)!r}, not {pairing!r}"
        )
    rotation = check_key_schedule(env, header, ring)
    if now is not None:
        _check_not_expired(header, now)
    _check_records(snapshot)
    return Accepted(snapshot, duplicate=False, rotation=rotation)


# 1. identity


def _check_identity(tls_party: str | None, policy: AcceptancePolicy) -> PartyPolicy:
    if tls_party is None:
        raise UnknownPartyError("the TLS peer presented no party identity")
    party = policy.parties.get(tls_party)
    if party is None:
        allowed = ", ".join(sorted(policy.parties)) or "none"
        raise UnknownPartyError(
            f"TLS identity {bounded(tls_party)!r} is not an allowed party ({allowed})"
        )
    return party


# 2. signature


def _check_signature(env: Envelope, ring: KeyRing, policy: AcceptancePolicy) -> None:
    result = envelope.verify(env, ring.known())
    if not result.threshold_met(1) and not result.invalid_keyids:
        other = _other_signer(env, ring.party, policy)
        if other is not None:
            raise UntrustedSignerError(
                f"signed by a key pinned for party {other!r}, not for {ring.party!r}"
            )
    _require_pinned(result, policy.parties[ring.party])


def _other_signer(env: Envelope, party: str, policy: AcceptancePolicy) -> str | None:
    # Name another party only when its key really signed: a key id alone is a mere claim.
    for other in policy.parties.values():
        if other.party != party and envelope.verify(env, other.keys).threshold_met(1):
            return other.party
    return None


def _require_pinned(result: envelope.VerificationResult, party: PartyPolicy) -> None:
    if result.threshold_met(1):
        return
    if result.invalid_keyids:
        raise BadSignatureError(
            f"signature by key {shown_keyids(result.invalid_keyids)} pinned for party "
            f"{party.party!r} does not verify over the received payload"
        )
    signers = shown_keyids(result.unknown_keyids) or "nobody"
    raise UntrustedSignerError(
        f"no signature by a key pinned for party {party.party!r} (signed by: {signers})"
    )


# 3. decoding, party, pairing and role


def _check_type(env: Envelope) -> None:
    if env.payload_type != SNAPSHOT_PAYLOAD_TYPE:
        raise MalformedSnapshot(
            f"payload type {bounded(env.payload_type)!r} is not {SNAPSHOT_PAYLOAD_TYPE!r}"
        )


def _decode_header(env: Envelope) -> SnapshotHeader:
    _check_type(env)
    return decode_header(env.payload)


def _decode(env: Envelope) -> Snapshot:
    """A verified peer snapshot, rebuilt from what a `Served` envelope brings if a delta."""
    _check_type(env)
    return decode_envelope(env)


def _check_membership(
    header: SnapshotHeader, party: str, pairings: Mapping[str, PairingPolicy]
) -> None:
    if header.party != party:
        raise PartyMismatchError(
            f"header names party {bounded(header.party)!r} but the TLS identity is {party!r}"
        )
    pairing = pairings.get(header.pairing)
    if pairing is None:
        raise PairingMismatchError(f"unknown pairing {bounded(header.pairing)!r}")
    role = pairing.role_of(party)
    if role is None:
        raise PairingMismatchError(
            f"party {party!r} is not a member of pairing {pairing.name!r} "
            f"(root {pairing.root!r}, subordinate {pairing.subordinate!r})"
        )
    if header.role != role:
        raise PairingMismatchError(
            f"header role {bounded(header.role)!r} but party {party!r} is the {role} "
            f"of pairing {pairing.name!r}"
        )


# 4. version, equivocation, chain


def _check_version(
    header: SnapshotHeader, digest: str, last: LastAccepted | None, max_step: int
) -> bool:
    """True for an idempotent re-push of the last accepted bytes."""
    if last is not None and header.version < last.version:
        raise RollbackError(
            f"version {header.version} is below the last accepted version {last.version} "
            f"of party {bounded(header.party)!r} in pairing {bounded(header.pairing)!r}"
        )
    if last is not None and header.version == last.version:
        if digest == last.payload_sha256:
            return True
        raise EquivocationError(
            f"version {header.version} was already accepted with digest "
            f"{last.payload_sha256}; this one is {digest}"
        )
    _check_step(header, last, max_step)
    _check_chain(header, last)
    return False


def _check_step(header: SnapshotHeader, last: LastAccepted | None, max_step: int) -> None:
    base = last.version if last is not None else 0
    if header.version - base > max_step:
        after = f"the last accepted version {base}" if last is not None else "0 (a first snapshot)"
        raise VersionJumpError(
            f"version {header.version} is more than {max_step} (max_version_step) above "
            f"{after} of party {bounded(header.party)!r} in pairing {bounded(header.pairing)!r}"
        )


def _check_chain(header: SnapshotHeader, last: LastAccepted | None) -> None:
    expected = last.payload_sha256 if last is not None else ""
    if header.previous_digest.hex() != expected:
        raise ChainError(
            f"previous_digest {bounded(header.previous_digest.hex()) or '(empty)'} is not the last "
            f"accepted digest {expected or '(empty: no snapshot accepted yet)'}"
        )


# 5. times


def _check_times(header: SnapshotHeader, policy: AcceptancePolicy, now: datetime) -> None:
    _check_not_expired(header, now)
    if header.issued_at > now + policy.max_clock_skew:
        raise FutureIssuedError(
            f"issued_at {rfc3339(header.issued_at)} is more than {policy.max_clock_skew} "
            f"after now ({rfc3339(now)})"
        )
    validity = header.expires_at - header.issued_at
    if validity <= timedelta(0):
        raise BadValidityError(
            f"expires_at {rfc3339(header.expires_at)} "
            f"is not after issued_at {rfc3339(header.issued_at)}"
        )
    if validity > policy.max_validity:
        raise BadValidityError(f"validity {validity} exceeds the maximum {policy.max_validity}")


def _check_not_expired(header: SnapshotHeader, now: datetime) -> None:
    if now >= header.expires_at:
        raise ExpiredError(f"expired at {rfc3339(header.expires_at)} (now {rfc3339(now)})")


# 6. records


def _check_records(snapshot: Snapshot) -> None:
    """Count, records_digest and no record twice; once per snapshot object, which is immutable:
    a daemon checks the peer's previous snapshot as the one it checked as current the cycle
    before, and the records_digest of 100,000 identities is 0.1 s."""
    if _RECORDS_CHECKED.holds(snapshot):
        return
    _check_records_anew(snapshot)
    _RECORDS_CHECKED.add(snapshot)


def _check_records_anew(snapshot: Snapshot) -> None:
    header, records = snapshot.header, snapshot.records
    if header.record_count != len(records):
        raise CountMismatchError(
            f"header says {header.record_count} records, the payload holds {len(records)}"
        )
    identities = snapshot.identities
    if len(identities) != len(records):  # not worked out by the decoder: read each record
        identities = tuple(bytes.fromhex(r.sha256) for r in records)
    digest = merkle_root(list(identities))
    if header.records_digest != digest:
        raise DigestMismatchError(
            f"records_digest {bounded(header.records_digest.hex())} is not the Merkle root "
            f"{digest.hex()} of the records"
        )
    if len(set(identities)) != len(identities):
        _check_duplicates(snapshot)


def _check_duplicates(snapshot: Snapshot) -> None:
    seen: dict[str, int] = {}
    for index, record in enumerate(snapshot.records):
        first = seen.setdefault(record.sha256, index)
        if first != index:
            raise DuplicateRecordError(f"record {index} ({record.sha256}) repeats record {first}")


_RECORDS_CHECKED: ObjectMarks[Snapshot] = ObjectMarks()
