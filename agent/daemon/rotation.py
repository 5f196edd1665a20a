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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from invsync.agent.config.settings import AgentConfig
from invsync.agent.exchange.acceptance import PartyPolicy
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keyring import KeyRing
from invsync.agent.exchange.keys import SigningKey, VerifyKey, load_signing_key, load_verify_key
from invsync.agent.exchange.rejections import UntrustedSignerError
from invsync.agent.exchange.server_keyring import ServerKeyRing
from invsync.agent.exchange.trusted import PairingTrust
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import Pins
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


def load_own_keys(config: AgentConfig) -> OwnKeys:
    """This party's signing keys as configured: the current one and the one rotated to."""
    next_key = config.next_signing_key
    return OwnKeys(
        load_signing_key(config.signing_key), load_signing_key(next_key) if next_key else None
    )


def report_pins(config: AgentConfig, store: AgentStore | None) -> Pins:
    """The report signers an agent's configuration pins (`pins_of`), its keys read from their
    files, its peers' rotations from `store` (none without one)."""
    rings = {
        name: KeyRing(name, policy.keys, tuple(store.rotations(name)) if store else ())
        for name, policy in peer_policies(config).items()
    }
    pinned = pinned_keys(config.server.signing_keys)
    # The server's keys it rotated to in its log, as this agent followed them.
    server = ServerKeyRing(pinned, tuple(store.server_rotations()) if store else ()).known()
    return pins_of(config.party, load_own_keys(config), server, rings)


def pins_of(
    party: str,
    own: OwnKeys,
    server_keys: Mapping[str, VerifyKey],
    peers: Mapping[str, KeyRing],
) -> Pins:
    """What an agent pins for report signers: the server's keys for the server role, this
    party's signing keys, and every key each peer's ring ever trusted (pinned, or rotated to
    with the old key's signature). Never a key a report lists about itself."""
    mine = frozenset(key.public.keyid for key in (own.current, own.next) if key is not None)
    parties = {party: mine} | {name: frozenset(ring.known()) for name, ring in peers.items()}
    return Pins(server=frozenset(server_keys), parties=parties)


class PeerKeys:
    """Verifies a peer's snapshots through the pairing's trusted state, with the peer's pinned keys
    and the rotations it announced, and records what the state accepted."""

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
        trust: PairingTrust[Any],
        version: int,
        fetch: Callable[[int], Envelope],
        now: datetime | None,
    ) -> Snapshot:
        """The peer's snapshot `version`: its current one when `now` is given (the trusted state
        then holds it as the last verified), an earlier one otherwise. Catches up on rotations
        missed in between when `version` > 0."""
        env = fetch(version)
        for _ in range(MAX_ROTATIONS):
            try:
                return self._verify(trust, env, version, now)
            except UntrustedSignerError:
                if version < 1 or not self._catch_up(trust, version, fetch):
                    raise
        return self._verify(trust, env, version, now)

    def _verify(
        self, trust: PairingTrust[Any], env: Envelope, version: int, now: datetime | None
    ) -> Snapshot:
        pairing = trust.pairing.name
        if now is None:
            verified = trust.verify_earlier_peer(env, version=version)
            if verified.rotation is not None:
                self.store.record_rotation(verified.rotation, self.clock())
        else:
            verified = trust.update_peer(env, version=version, now=now)
            self.store.record_peer(pairing, trust.state, verified.rotation, self.clock())
        return verified.snapshot

    def _catch_up(
        self, trust: PairingTrust[Any], version: int, fetch: Callable[[int], Envelope]
    ) -> bool:
        """Find the latest earlier version this agent can verify; True if it rotated a key."""
        known = len(trust.rotations)
        for earlier in range(version - 1, max(0, version - 1 - MAX_WALK_BACK), -1):
            try:
                self._verify(trust, fetch(earlier), earlier, None)
            except UntrustedSignerError:
                continue
            return len(trust.rotations) > known
        return False
