"""A party's snapshot-signing keys over time: pinned in configuration, then rotated in-band.

A party replaces its signing key by announcing the new key (`next_signing_key`, its
SubjectPublicKeyInfo) in a snapshot signed by both a key the receiver trusts for it and the
new key. The receiver (the server, and the peer's agent) accepts the new key only that way and
records the rotation; in that pairing, every later snapshot must be signed by the new key, and a
snapshot signed by an old key alone is refused. Rotations are per pairing because a snapshot's
version is: the same party may switch one pairing before another.

Signatures are checked over the exact bytes before parsing: the envelope is first verified
against every key ever trusted for the party (`KeyRing.known`), and only then, with the
authenticated header in hand, against the keys in force for that pairing and version.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import VerifyKey, verify_key_from_spki_der
from invsync.agent.exchange.rejections import (
    KeyAnnouncementError,
    RetiredKeyError,
    SnapshotRejected,
    UntrustedSignerError,
)
from invsync.agent.model.snapshot import SnapshotHeader

__all__ = [
    "KeyRing",
    "Rotation",
    "check_key_schedule",
    "rotation_from_row",
    "rotation_row",
]


@dataclass(frozen=True)
class Rotation:
    """A party's switch to `new_key` in a pairing, announced by the snapshot at `version`."""

    party: str
    pairing: str
    version: int
    new_key: VerifyKey
    old_keys: tuple[VerifyKey, ...]  # the keys in force before, now retired in the pairing


@dataclass(frozen=True)
class KeyRing:
    """The keys of one party: those pinned in configuration and every recorded rotation."""

    party: str
    pinned: Mapping[str, VerifyKey]  # keyid -> key
    rotations: tuple[Rotation, ...] = field(default=())

    def known(self) -> dict[str, VerifyKey]:
        """Every key trusted for the party at some version of some pairing: the check before
        parsing, so that only bytes one of the party's keys signed are ever decoded."""
        keys = dict(self.pinned)
        for pairing in {r.pairing for r in self.rotations}:
            for rotation in self._chain(pairing):
                keys.update(_by_id([rotation.new_key, *rotation.old_keys]))
        return keys

    def keys_for(self, pairing: str, version: int | None = None) -> dict[str, VerifyKey]:
        """The keys that may sign the party's snapshot `version` of `pairing` (None: the next).

        The announcing snapshot itself is signed by the keys before it (kept valid for earlier
        versions even if the operator has since pinned only the new key); every later one by
        the new key alone.
        """
        keys = dict(self.pinned)
        for rotation in self._chain(pairing):
            if version is not None and rotation.version >= version:
                keys.update(_by_id(rotation.old_keys))
                break
            keys = _by_id([rotation.new_key])
        return keys

    def retired_by(self, pairing: str, keyid: str) -> Rotation | None:
        """The rotation of `pairing` that retired `keyid`; None if it is in force or never was."""
        if keyid in self.keys_for(pairing):
            return None
        return next((r for r in self._chain(pairing) if keyid in _by_id(r.old_keys)), None)

    def _chain(self, pairing: str) -> list[Rotation]:
        """The recorded rotations of `pairing` that continue from the pinned keys.

        A rotation whose old keys are no longer pinned, and whose new key is not either, is
        left out: the operators re-pinned the party's key out of band (after a compromise, the
        old key's holder could have announced a key of its own), and the pin wins.
        """
        chain: list[Rotation] = []
        keys = set(self.pinned)
        ordered = sorted(
            (r for r in self.rotations if r.pairing == pairing), key=lambda r: r.version
        )
        for rotation in ordered:
            if keys & {k.keyid for k in rotation.old_keys} or rotation.new_key.keyid in keys:
                chain.append(rotation)
                keys = {rotation.new_key.keyid}
        return chain


def check_key_schedule(env: Envelope, header: SnapshotHeader, ring: KeyRing) -> Rotation | None:
    """Check a verified, decoded snapshot against the keys in force; the rotation it announces.

    The envelope was already verified against `ring.known()`. Here it must carry a valid
    signature by a key in force for its pairing and version, and an announced key must have
    signed it too. Returns None when nothing new is announced (none, or the key already in force).
    """
    allowed = ring.keys_for(header.pairing, header.version)
    result = envelope.verify(env, allowed)
    if not result.threshold_met(1):
        raise _not_in_force(env, header, ring)
    if not header.next_signing_key:
        return None
    new_key = _announced(header)
    if new_key.keyid in allowed:
        return None
    retired = ring.retired_by(header.pairing, new_key.keyid)
    if retired is not None:
        raise KeyAnnouncementError(
            f"party {header.party!r} announces key {new_key.keyid[:16]}, which it retired in "
            f"pairing {header.pairing!r} at version {retired.version}"
        )
    if not envelope.verify(env, _by_id([new_key])).threshold_met(1):
        raise KeyAnnouncementError(
            f"party {header.party!r} announces key {new_key.keyid[:16]} in version "
            f"{header.version} of pairing {header.pairing!r}, but that key did not sign it"
        )
    old = tuple(allowed[k] for k in sorted(allowed))
    return Rotation(header.party, header.pairing, header.version, new_key, old)


def _announced(header: SnapshotHeader) -> VerifyKey:
    try:
        return verify_key_from_spki_der(header.next_signing_key, source="next_signing_key")
    except InvsyncError as e:
        raise KeyAnnouncementError(
            f"party {header.party!r} announces a key that is not a usable public key: {e}"
        ) from e


def _not_in_force(env: Envelope, header: SnapshotHeader, ring: KeyRing) -> SnapshotRejected:
    signers = sorted({s.keyid for s in env.signatures})
    for keyid in signers:
        rotation = ring.retired_by(header.pairing, keyid)
        if rotation is not None:
            return RetiredKeyError(
                f"version {header.version} of party {header.party!r} in pairing "
                f"{header.pairing!r} is signed by key {keyid[:16]} alone, which the party "
                f"replaced with key {rotation.new_key.keyid[:16]} at version {rotation.version}"
            )
    return UntrustedSignerError(
        f"no signature by a key in force for party {header.party!r} in pairing "
        f"{header.pairing!r}; a new key must first be announced in a snapshot signed by both "
        f"the current and the new key (signed by: {', '.join(k[:16] for k in signers)})"
    )


def rotation_row(rotation: Rotation, recorded_at: str) -> dict[str, object]:
    """A rotation as a database row (both daemons keep the same columns)."""
    old = [base64.b64encode(k.spki_der).decode("ascii") for k in rotation.old_keys]
    return {
        "party": rotation.party,
        "pairing": rotation.pairing,
        "version": rotation.version,
        "new_key": rotation.new_key.spki_der,
        "old_keys": json.dumps(old),
        "accepted_at": recorded_at,
    }


def rotation_from_row(row: Mapping[str, Any]) -> Rotation:
    """A rotation back from `rotation_row`'s columns."""
    old = tuple(
        verify_key_from_spki_der(base64.b64decode(text), source="stored retired key")
        for text in json.loads(row["old_keys"])
    )
    new_key = verify_key_from_spki_der(bytes(row["new_key"]), source="stored rotated key")
    return Rotation(row["party"], row["pairing"], int(row["version"]), new_key, old)


def _by_id(keys: Iterable[VerifyKey]) -> dict[str, VerifyKey]:
    return {key.keyid: key for key in keys}
