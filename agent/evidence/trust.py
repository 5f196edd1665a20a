"""The keys an evidence verifier trusts, and from when.

Only pinned key ids are trust anchors: the server's under its configured name, each party's
under its own (`--pin NAME=KEYID`, obtained out of band). A bundle's keys.json only supplies the
key material for those ids (a key's id is the SHA-256 of the key, so a substitute cannot match).
Beyond the pins, a party's key is trusted only as that party announced it in-band: in a
KEY_ANNOUNCEMENT entry whose snapshot a key in force and the new key both signed, and only from
that entry on. The rotations are `agent.exchange.keyring.Rotation`s, so the keys in force at a
point of the log are exactly what the server and the agents compute (`KeyRing.keys_for`). The
server's own key is followed the same way, through its SERVER_KEY announcements
(`agent.exchange.server_keyring`), from the key pinned for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from invsync.agent.evidence.failures import CheckFailed
from invsync.agent.exchange.keyring import KeyRing, Rotation
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.server_keyring import ServerKeyRing

# signer name -> the key ids pinned for it (`report.body.Pins` also pins by signer role)
PinnedIds = Mapping[str, frozenset[str]]


class Trust:
    def __init__(self, server: str, pins: PinnedIds, candidates: Mapping[str, VerifyKey]) -> None:
        self.server = server
        self.pins = pins
        self.candidates = candidates  # keyid -> key: the bundle's keys, trusted by no one yet
        self.rotations: list[tuple[int, Rotation]] = []  # (entry index, rotation), in log order
        self.resets: list[tuple[int, str, str, int]] = []  # (entry, party, pairing, above)
        # The server's pinned keys and the rotations the log proved (check 2 follows them).
        self.server_ring: ServerKeyRing | None = None

    def server_keys(self, check: str, where: str) -> list[VerifyKey]:
        """The server's pinned keys; CheckFailed(`check`, `where`) when there is none."""
        keys = self._pinned(self.server)
        if not keys:
            raise CheckFailed(check, where, self._unpinned(self.server, "server"))
        return keys

    def server_ids(self, check: str, where: str, at: int | None = None) -> dict[str, VerifyKey]:
        """The server's keys: pinned, or with `at` those in force for what is logged as entry
        `at` (a key it announced in the log, from its announcement on)."""
        pinned = {key.keyid: key for key in self.server_keys(check, where)}
        if at is None or self.server_ring is None:
            return pinned
        return self.server_ring.keys_at(at + 1)

    def ring(self, party: str, check: str, where: str, before: int | None = None) -> KeyRing:
        """`party`'s pinned keys and the rotations it announced before entry `before` (None: all
        so far); CheckFailed when no key is pinned for it."""
        if party == self.server:
            raise CheckFailed(check, where, f"party {party!r} has the server's name")
        keys = self._pinned(party)
        if not keys:
            raise CheckFailed(check, where, self._unpinned(party, "party"))
        rotations = tuple(
            r
            for i, r in self.rotations
            if r.party == party and (before is None or i < before) and self._in_force(i, r, before)
        )
        return KeyRing(party, {key.keyid: key for key in keys}, rotations)

    def add_rotation(self, index: int, rotation: Rotation) -> None:
        self.rotations.append((index, rotation))

    def drop_rotations(self, index: int, party: str, pairing: str, above: int) -> None:
        """From entry `index` on, `party`'s rotations in `pairing` logged before it at versions
        above `above` are out of force: a chain reset set their snapshots aside, as the server
        did their keys. What was signed before the reset is still judged with them."""
        self.resets.append((index, party, pairing, above))

    def _in_force(self, at: int, rotation: Rotation, before: int | None) -> bool:
        """Whether `rotation`, logged at entry `at`, is in force before entry `before`."""
        return not any(
            at < reset < (before if before is not None else reset + 1)
            and (rotation.party, rotation.pairing) == (party, pairing)
            and rotation.version > above
            for reset, party, pairing, above in self.resets
        )

    def announced_at(self, keyid: str) -> int | None:
        """The entry whose rotation put `keyid` in force; None if none did (so far)."""
        return next((i for i, r in self.rotations if r.new_key.keyid == keyid), None)

    def _pinned(self, name: str) -> list[VerifyKey]:
        ids = sorted(self.pins.get(name, frozenset()))
        return [self.candidates[keyid] for keyid in ids if keyid in self.candidates]

    def _unpinned(self, name: str, what: str) -> str:
        pinned = self.pins.get(name)
        if not pinned:
            return f"no key is pinned for the {what} {name!r} (pass --pin {name}=KEYID)"
        ids = ", ".join(sorted(pinned))
        return f"no key pinned for the {what} {name!r} is in the bundle's keys.json (pinned: {ids})"
