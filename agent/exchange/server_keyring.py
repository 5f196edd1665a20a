"""The exchange server's signing keys over time: pinned in configuration, then rotated in band.

The server replaces its signing key with `invsync server keys rotate`, which appends a SERVER_KEY
entry to its log (`agent.exchange.server_key`): the new key, signed by the key it replaces and by
the new key. The log fixes where the switch happened, so the key that may sign a document is the
one in force at its place in the log:

- a checkpoint of a tree that ends before the announcement: the old key;
- the checkpoint of the tree that ends with it: both keys signed it, either opens it (an agent
  that trusts only the old key verifies the announcement's inclusion with it);
- every later checkpoint, and every receipt or chain reset logged after it: the new key alone.

A key signing alone where it was retired is `RetiredServerKeyError`; a key the ring never saw
announced is no key of the server (`ServerSignatureError`, `BadCheckpoint`). The ring follows
the announcements recorded from the pinned keys on: one whose old key is no longer pinned and
whose new key is not either is left out, so that re-pinning the server's key by hand (after a
leak, when the old key's holder could have announced a key of its own) wins over the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from invsync.agent.errors import bounded
from invsync.agent.exchange.checkpoint import BadCheckpoint, Checkpoint, open_checkpoint
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.rejections import RetiredServerKeyError

__all__ = ["ServerKeyRing", "ServerRotation", "open_checkpoint_in_force", "unsigned_by_ring"]

# Told whenever a key the ring does not know signed: what the operator or auditor should know.
UNANNOUNCED = (
    "a new server key is trusted only once its announcement, a SERVER_KEY log entry signed by "
    "the key it replaces, is verified"
)
# How `open_checkpoint` says that the key it was given made no signature line of the note.
_NOT_SIGNED_BY_IT = "no signature by a pinned key verifies"


@dataclass(frozen=True)
class ServerRotation:
    """The server's switch from `old_key` to `new_key`, announced by log entry `index`."""

    index: int
    new_key: VerifyKey
    old_key: VerifyKey
    announced_at: datetime


@dataclass(frozen=True)
class ServerKeyRing:
    """The server's pinned keys and the rotations recorded since (see the module docstring)."""

    pinned: Mapping[str, VerifyKey]  # keyid -> key
    rotations: tuple[ServerRotation, ...] = field(default=())

    def chain(self) -> list[ServerRotation]:
        """The recorded rotations that continue from the pinned keys, in log order."""
        return list(self._chain)

    @cached_property
    def _chain(self) -> tuple[ServerRotation, ...]:
        # Worked out once per ring (a ring never changes: `with_rotation` makes another), not
        # at every `known`, `keys_at` and `latest_index` of every checkpoint opened.
        chain: list[ServerRotation] = []
        keys = set(self.pinned)
        for rotation in sorted(self.rotations, key=lambda r: r.index):
            if rotation.old_key.keyid in keys or rotation.new_key.keyid in self.pinned:
                chain.append(rotation)
                keys = {rotation.new_key.keyid}
        return tuple(chain)

    def known(self) -> dict[str, VerifyKey]:
        """Every key the server signed with at some place of the log: what a signature is
        checked against before anything is parsed; where it stands is checked after."""
        keys = dict(self.pinned)
        for rotation in self.chain():
            keys.update(_by_id([rotation.old_key, rotation.new_key]))
        return keys

    def keys_at(self, size: int | None = None) -> dict[str, VerifyKey]:
        """The keys that may sign the checkpoint of the tree of `size` entries (None: of any
        tree from now on), or a document logged as entry `size - 1`."""
        keys = dict(self.pinned)
        for rotation in self.chain():
            if size is not None and size <= rotation.index:
                keys.update(_by_id([rotation.old_key]))
                break
            if size == rotation.index + 1:
                keys = _by_id([rotation.old_key, rotation.new_key])
                break
            keys = _by_id([rotation.new_key])
        return keys

    def latest_index(self) -> int:
        """The log entry of the last rotation followed (-1: none); the log is read from the
        entry after it for the next one."""
        chain = self.chain()
        return chain[-1].index if chain else -1

    def retired(self, keyid: str) -> ServerRotation | None:
        """The rotation that retired `keyid`, None if it never was."""
        return next((r for r in self.chain() if r.old_key.keyid == keyid), None)

    def check_in_force(self, keyids: Iterable[str], size: int | None, what: str) -> None:
        """RetiredServerKeyError unless one of `keyids` (keys of `known()` that signed) may sign
        at `size` (`keys_at`)."""
        signers = sorted(set(keyids))
        allowed = self.keys_at(size)
        if any(keyid in allowed for keyid in signers):
            return
        for keyid in signers:
            rotation = self.retired(keyid)
            if rotation is not None:
                raise RetiredServerKeyError(
                    f"{what} is signed by server key {keyid[:16]} alone, which the server "
                    f"replaced with key {rotation.new_key.keyid[:16]} at log entry "
                    f"{rotation.index}"
                )
        shown = ", ".join(k[:16] for k in signers) or "nobody"
        raise RetiredServerKeyError(
            f"{what} is signed by server key {shown}, not yet in force there ({UNANNOUNCED})"
        )

    def with_rotation(self, rotation: ServerRotation) -> ServerKeyRing:
        return ServerKeyRing(self.pinned, (*self.rotations, rotation))


def open_checkpoint_in_force(note: bytes, name: str, ring: ServerKeyRing) -> Checkpoint:
    """The checkpoint of `note` (origin and key name `name`) once a key of `ring` verifies it
    and that key is in force for the checkpoint's tree size; BadCheckpoint when no key of the
    ring opens it, RetiredServerKeyError when only a key retired before that size does."""
    opened: Checkpoint | None = None
    signers: list[str] = []
    for key in ring.known().values():  # a note names one key per name: each key in turn
        try:
            opened = open_checkpoint(note, name, {name: key})
        except BadCheckpoint as e:
            if _NOT_SIGNED_BY_IT not in str(e):
                raise  # malformed, another origin, or a bad signature by this very key
            continue
        signers.append(key.keyid)
    if opened is None:  # as `open_pinned` says it: an unannounced key is no key of the server
        raise BadCheckpoint(f"checkpoint of {bounded(name)}: {_NOT_SIGNED_BY_IT}")
    ring.check_in_force(signers, opened.size, f"the checkpoint of tree size {opened.size}")
    return opened


def unsigned_by_ring(error: BadCheckpoint) -> bool:
    """Whether `open_checkpoint_in_force` refused a well-formed note that no key of the ring
    signed (rather than a malformed one, or a bad signature by one of its keys)."""
    return str(error).endswith(_NOT_SIGNED_BY_IT)


def _by_id(keys: Iterable[VerifyKey]) -> dict[str, VerifyKey]:
    return {key.keyid: key for key in keys}
