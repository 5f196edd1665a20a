"""Key rotation as the agent does it: its own keys, and its peer's (see agent.exchange.keyring).

Own keys: with `agent.next_signing_key` set, the next snapshot of each pairing announces the new
key and is signed by the current and the new key; once the server has receipted that snapshot,
the pairing's snapshots and reports are signed by the new key alone.

Peer keys: a peer snapshot that announces a key and carries both signatures rotates the peer's
key for that pairing, recorded in the agent's database. A peer snapshot signed by a key this
agent has never seen may follow an announcement the agent did not fetch (the peer pushed twice
between two cycles), so the agent walks back through the peer's earlier versions to find it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from invsync.agent.config.settings import AgentConfig
from invsync.agent.exchange.acceptance import PairingPolicy, PartyPolicy, verify_peer_rotation
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keyring import KeyRing
from invsync.agent.exchange.keys import SigningKey, VerifyKey, load_verify_key
from invsync.agent.exchange.rejections import UntrustedSignerError
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.store.agent_store import AgentStore, SentSnapshot

# How far back a missed announcement is looked for; each step is one fetch.
MAX_WALK_BACK = 64
# How many rotations in a row one fetch may catch up on.
MAX_ROTATIONS = 8


@dataclass(frozen=True)
class OwnKeys:
    """Which of this party's keys sign a pairing's snapshots and reports."""

    current: SigningKey
    next: SigningKey | None = None

    def for_snapshot(self, last: SentSnapshot | None) -> tuple[list[SigningKey], bytes]:
        """The keys that sign the snapshot after `last`, and the key it announces (or b"")."""
        if self.next is None:
            return [self.current], b""
        if self.switched(last):
            return [self.next], b""
        return [self.current, self.next], self.next.public.spki_der

    def for_reports(self, last: SentSnapshot | None) -> SigningKey:
        """The key in force after `last`, the pairing's latest receipted snapshot."""
        return self.next if self.next is not None and self.switched(last) else self.current

    def switched(self, last: SentSnapshot | None) -> bool:
        """True once the server receipted a snapshot of the pairing signed by the new key."""
        if self.next is None or last is None:
            return False
        return any(keyid == self.next.public.keyid for keyid, _ in last.signatures)


def pinned_keys(paths: Iterable[Path]) -> dict[str, VerifyKey]:
    """The public keys in `paths`, by key id."""
    keys = [load_verify_key(path) for path in paths]
    return {key.keyid: key for key in keys}


def peer_policies(config: AgentConfig) -> dict[str, PartyPolicy]:
    """Each configured peer with the keys pinned for it."""
    return {name: PartyPolicy(name, pinned_keys(paths)) for name, paths in config.peers.items()}


class PeerKeys:
    """Verifies a peer's snapshots with its pinned keys and the rotations it announced."""

    def __init__(
        self, store: AgentStore, peers: dict[str, PartyPolicy], clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.peers = peers
        self.clock = clock

    def ring(self, peer: str) -> KeyRing:
        policy = self.peers[peer]
        return KeyRing(peer, policy.keys, tuple(self.store.rotations(peer)))

    def verify(
        self,
        env: Envelope,
        peer: str,
        pairing: PairingPolicy,
        now: datetime | None,
        fetch: Callable[[int], Envelope],
        version: int,
    ) -> Snapshot:
        """The peer's verified snapshot; catches up on missed rotations when `version` > 0."""
        for _ in range(MAX_ROTATIONS):
            try:
                return self._verify(env, peer, pairing, now)
            except UntrustedSignerError:
                if version < 1 or not self._catch_up(peer, pairing, version, fetch):
                    raise
        return self._verify(env, peer, pairing, now)

    def _verify(
        self, env: Envelope, peer: str, pairing: PairingPolicy, now: datetime | None
    ) -> Snapshot:
        accepted = verify_peer_rotation(
            env,
            peer=self.peers[peer],
            pairing=pairing,
            now=now,
            rotations=self.store.rotations(peer),
        )
        if accepted.rotation is not None:
            self.store.record_rotation(accepted.rotation, self.clock())
        return accepted.snapshot

    def _catch_up(
        self, peer: str, pairing: PairingPolicy, version: int, fetch: Callable[[int], Envelope]
    ) -> bool:
        """Find the latest earlier version this agent can verify; True if it rotated a key."""
        known = len(self.store.rotations(peer))
        for earlier in range(version - 1, max(0, version - 1 - MAX_WALK_BACK), -1):
            try:
                self._verify(fetch(earlier), peer, pairing, None)
            except UntrustedSignerError:
                continue
            return len(self.store.rotations(peer)) > known
        return False
