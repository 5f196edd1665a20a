"""Checking a report before co-signing it: the agent rebuilds the body and signs only its twin.

The agent never takes the server's word for a report: it fetches the peer's signed snapshot,
passes it through the pairing's trusted state (`agent.exchange.trusted`: the peer's keys, pinned
or rotated in band, and no older snapshot than one already verified), rebuilds the body with the
same builder the server calls (`agent.report.build`) and signs only when the bytes are identical.
Otherwise it refuses and says what differs. The log checkpoint the peer's snapshot carries
must be of the log this agent verified (`agent.daemon.log_watch`: no split view). A peer
snapshot refused as a rollback, or as showing a split view, is kept with its finding
(`peer-rollback`, `log-split-view`) in the agent's database and logged
(`agent.daemon.refusals`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime

from invsync.agent.config.settings import AgentConfig, PairingConfig
from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.refusals import recording_refusals
from invsync.agent.daemon.rotation import OwnKeys, PeerKeys
from invsync.agent.errors import InvsyncError, ReportError
from invsync.agent.exchange import recent_snapshots
from invsync.agent.exchange.acceptance import PairingPolicy, PartyPolicy
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keyring import KeyRing
from invsync.agent.exchange.keys import SigningKey, VerifyKey
from invsync.agent.exchange.server_keyring import ServerKeyRing
from invsync.agent.exchange.snapshot import Base, Served
from invsync.agent.exchange.trusted import DocumentFormat, PairingTrust, SharedLog
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Snapshot
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    Signer,
    SnapshotRef,
    compare_findings,
    parse_report_body,
)
from invsync.agent.report.build import ReportSide, build_report
from invsync.agent.store.agent_store import AgentStore

# How the trusted state tells a report from other signed documents and reads it.
REPORTS = DocumentFormat(REPORT_PAYLOAD_TYPE, parse_report_body)


class PeerArrived(ReportError):
    """A report says the peer sent no snapshot, but the server now holds one.

    Expected when both parties push their first snapshots at once: the report made on the first
    push is overtaken by the one made on the second, which the cycle goes on to co-sign.
    """


class ReportCheck:
    """What an agent checks before it adds its signature to a report of one of its pairings."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        store: AgentStore,
        client: ExchangeClient,
        keys: OwnKeys,
        server_keys: Mapping[str, VerifyKey],
        peer_keys: PeerKeys,
        clock: Callable[[], datetime],
        log_watch: LogWatch | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self.keys = keys
        self.server_keys = server_keys
        self.peer_keys = peer_keys
        self.clock = clock
        self.log_watch = log_watch or LogWatch(party=config.party, store=store, clock=clock)
        self._trusted: dict[str, PairingTrust[ReportBody]] = {}
        self._log: SharedLog | None = None  # the agent's one log, shared by its pairings

    def trust(self, pairing: PairingConfig) -> PairingTrust[ReportBody]:
        """The pairing's trusted state, read from the store once: every receipt, peer snapshot
        and report of the pairing passes it, and it is saved with what it guards."""
        if pairing.name not in self._trusted:
            peer = self.peer_keys.peers[pairing.peer]
            state = self.store.trusted_state(pairing.name)
            if self._log is None:  # a configured name is the origin, whatever was adopted
                self._log = SharedLog(
                    self.config.server.name or state.origin,
                    state.checkpoint,
                    server_ring(self.server_keys, self.store),
                )
            trust = pairing_trust(
                self.config.party, pairing, self.store, self.server_keys, peer, self._log
            )
            self._trusted[pairing.name] = trust
        return self._trusted[pairing.name]

    def server_ring(self) -> ServerKeyRing:
        """The server's keys as the agent's one log knows them: pinned, and rotated to since."""
        held = self._log.ring if self._log is not None else None
        return held or server_ring(self.server_keys, self.store)

    def check(self, pairing: PairingConfig, own: Snapshot, body_bytes: bytes) -> None:
        """Refuse unless the body is exactly the one this agent builds from the two snapshots."""
        body = parse_report_body(body_bytes)
        with self._recording_refusals(pairing.name):
            sides = self._sides(pairing, own, getattr(body, other_role(pairing.role)))
        for role, side in sides.items():
            _check_ref(pairing.name, getattr(body, role), side.ref(role))
        self._check_signers(pairing, body.signers)
        mine = build_report(
            pairing=pairing.name,
            as_of=body.as_of,
            root=sides[ROOT],
            subordinate=sides[SUBORDINATE],
            signers=body.signers,
            previous=self._previous_report(pairing, body.previous_report),
        )
        _refuse_unless_twin(pairing.name, body_bytes, mine)

    def _recording_refusals(self, pairing: str) -> AbstractContextManager[None]:
        """A refusal that is a finding of the pairing (a peer rollback, a split view) is kept
        and logged before it ends the check: the exchange server will not report it itself."""
        return recording_refusals(self.store, self.config.party, pairing, self.clock)

    def _sides(
        self, pairing: PairingConfig, own: Snapshot, peer_ref: SnapshotRef
    ) -> dict[str, ReportSide]:
        """Both sides by role: our own snapshot, and the peer's the report names as verified here
        (the server's word is taken for the peer's version only, never for its content)."""
        mine = ReportSide.of(own, self._own_previous(pairing.name, own))
        return {
            pairing.role: mine,
            other_role(pairing.role): self._peer_side(pairing, peer_ref),
        }

    def _peer_side(self, pairing: PairingConfig, ref: SnapshotRef) -> ReportSide:
        """The peer's snapshot the report names, verified here; absent only if the server agrees."""
        if ref.version == 0:
            self._check_peer_absent(pairing)
            return ReportSide(pairing.peer)
        peer = self._fetch_peer(pairing, ref.version, digest=ref.digest)
        self.log_watch.check_peer_view(self.client, self.trust(pairing), peer.header)
        return ReportSide.of(peer, self._peer_previous(pairing, peer))

    def _check_peer_absent(self, pairing: PairingConfig) -> None:
        """A report saying the peer sent nothing is signed only if nothing of it was verified
        here and the server indeed has nothing."""
        self.trust(pairing).check_peer_absent()
        if not self.client.peer_has_snapshot(pairing.name):
            return
        raise PeerArrived(
            f"refusing to sign report on pairing {pairing.name!r}: it says {pairing.peer} has "
            "sent no snapshot, but the server holds one"
        )

    def _previous_report(self, pairing: PairingConfig, rid: str | None) -> ReportBody | None:
        """The report the server's body says it continues, checked as the server's own.

        first_seen and resolved depend on it, so it must be a report the server signed for this
        pairing under that id: the trusted state verifies its server signature with the pinned
        keys before it parses it.
        """
        if rid is None:
            return None
        try:
            stored = self.client.report(pairing.name, rid)
        except NotFoundYet as e:
            raise ReportError(
                f"refusing to sign report on pairing {pairing.name!r}: the server does not have "
                f"the previous report {rid} it names"
            ) from e
        # Named by its id in a report the key in force signed: possibly made before a rotation
        # of the server's key, by the key it retired.
        env = Envelope.from_pb(stored.envelope)
        return self.trust(pairing).verify_report(env, report_id=rid, made_now=False)

    def _own_previous(self, pairing: str, own: Snapshot) -> Snapshot | None:
        sent = self.store.sent_snapshot(pairing, own.header.version - 1)
        if sent is None:
            return None
        if sent.whole is None:
            raise ReportError(
                f"pairing {pairing!r}: our version {sent.version}, restored from the exchange's "
                "log, is a delta whose whole set this agent could not rebuild, so what "
                "disappeared since cannot be checked here; the report is not co-signed"
            )
        return sent.decoded()

    def _peer_previous(self, pairing: PairingConfig, peer: Snapshot) -> Snapshot | None:
        """The peer's snapshot before the compared one, verified like it (for `disappeared`)."""
        if peer.header.version <= 1:
            return None
        before = peer.header.previous_digest.hex()
        try:
            return self._fetch_peer(pairing, peer.header.version - 1, current=False, digest=before)
        except NotFoundYet:
            return None

    def _fetch_peer(
        self, pairing: PairingConfig, version: int, *, current: bool = True, digest: str = ""
    ) -> Snapshot:
        """The peer's snapshot `version` through the trusted state: the current one becomes the
        last verified (and must not be older than it), an earlier one is only checked. One kept
        from an earlier cycle with the payload `digest` the report or the next snapshot names is
        verified again instead of fetched (another, say one a chain reset set aside, is not
        used); one fetched is kept."""
        served: dict[int, Envelope] = {}

        def fetch(wanted: int) -> Envelope:
            kept = self.store.peer_snapshot(pairing.name, wanted) if wanted == version else None
            if kept is None or hashlib.sha256(kept.payload).hexdigest() != digest:
                kept = self._fetch_with_base(pairing.name, wanted)
            served[wanted] = kept
            return kept

        snapshot = self.peer_keys.verify(
            self.trust(pairing), version, fetch, self.clock() if current else None
        )
        env = served.get(version)
        if env is not None and version == snapshot.header.version:
            full = snapshot.full if snapshot.header.delta else b""
            self.store.keep_peer_snapshot(pairing.name, version, env, self.clock(), full)
        recent = recent_snapshots.installed()
        if current and recent is not None:  # verified, and the last verified: the next base
            recent.adopt_whole(snapshot)
        return snapshot

    def prefetch_peer(self, pairing: PairingConfig, report: Envelope) -> None:
        """Fetch the peer's snapshot that `report` (verified by the trusted state) names, ahead
        of its check, unless it came with the report or is kept here: the log watch in between
        then names it as held, and its log entry comes without it
        (`ExchangeClient.prefetch_peer_snapshot`). Nothing fetched is trusted before the check
        verifies it; a failure here is the check's to report, when it fetches again."""
        try:
            peer = getattr(parse_report_body(report.payload), other_role(pairing.role))
            base = self.peer_base_digest(pairing.name)
            if peer.version == 0 or peer.digest == base:
                return
            self.client.prefetch_peer_snapshot(pairing.name, peer.version, bytes.fromhex(base))
        except InvsyncError:
            return

    def _fetch_with_base(self, pairing: str, version: int) -> Served:
        """The peer's snapshot from the server, offering the latest one kept here as the base
        a delta may build on: a delta on it comes alone and is rebuilt here, after its
        signature verified; any other comes with its whole set."""
        base = self._held_base(pairing) or self.store.peer_base(pairing)
        offered = bytes.fromhex(base.payload_sha256) if base else b""
        served = self.client.fetch_peer_snapshot(pairing, version, base_sha256=offered)
        return served if served.full or base is None else replace(served, base=base)

    def peer_base_digest(self, pairing: str) -> str:
        """The digest of the peer snapshot this agent offers as the base of the peer's next
        delta (`AgentStore.peer_base_digest`), learnt without reading its whole set when this
        process holds it (`_held_base`)."""
        held = self._held_base(pairing)
        return held.payload_sha256 if held else self.store.peer_base_digest(pairing)

    def _held_base(self, pairing: str) -> Base | None:
        """The latest peer snapshot kept, when this process holds its whole set as read when
        decoding it (agent.exchange.recent_snapshots): a daemon then reads no 60 MB blob."""
        recent = recent_snapshots.installed()
        digest = self.store.latest_peer_digest(pairing) if recent is not None else ""
        whole = recent.whole(digest) if recent is not None and digest else None
        return Base(digest, b"", whole) if whole is not None else None

    def report_key(self, pairing: str) -> SigningKey:
        """Our key in force in `pairing`: the new one once a snapshot signed by it is receipted."""
        return self.keys.for_reports(self.store.latest_sent_snapshot(pairing))

    def _check_signers(self, pairing: PairingConfig, signers: Sequence[Signer]) -> None:
        """Every key the report expects must be one this agent pins for that role."""
        ours = self.report_key(pairing.name).public.keyid
        pinned = {
            "server": set(self.trust(pairing).server_ring.keys_at(None)),
            pairing.role: {ours},
            other_role(pairing.role): set(self._peer_ring(pairing).keys_for(pairing.name)),
        }
        for signer in signers:
            if signer.keyid not in pinned.get(signer.role, set()):
                raise ReportError(
                    f"refusing to sign report on pairing {pairing.name!r}: it expects a "
                    f"{signer.role} signature by key {signer.keyid[:16]}, which is not pinned here"
                )
        if ours not in {s.keyid for s in signers if s.role == pairing.role}:
            raise ReportError(
                f"refusing to sign report on pairing {pairing.name!r}: it does not list our key "
                f"{ours[:16]} as the {pairing.role}'s"
            )

    def _peer_ring(self, pairing: PairingConfig) -> KeyRing:
        """The peer's keys as the trusted state knows them: pinned, and rotated in since."""
        trust = self.trust(pairing)
        return KeyRing(pairing.peer, self.peer_keys.peers[pairing.peer].keys, trust.rotations)


def pairing_trust(
    party: str,
    pairing: PairingConfig,
    store: AgentStore,
    server_keys: Mapping[str, VerifyKey],
    peer: PartyPolicy,
    shared: SharedLog | None = None,
) -> PairingTrust[ReportBody]:
    """The pairing's trusted state as `store` last saved it, with the pinned keys, sharing
    the agent's one log (`shared`) with its other pairings."""
    return PairingTrust(
        party=party,
        pairing=_policy(pairing, party),
        server_keys=server_ring(server_keys, store),
        peer=peer,
        reports=REPORTS,
        rotations=store.rotations(pairing.peer),
        state=store.trusted_state(pairing.name),
        shared=shared,
    )


def server_ring(server_keys: Mapping[str, VerifyKey], store: AgentStore) -> ServerKeyRing:
    """The server's pinned keys and the rotations of them this agent followed."""
    return ServerKeyRing(dict(server_keys), tuple(store.server_rotations()))


def _refuse_unless_twin(pairing: str, received: bytes, built: bytes) -> None:
    """Byte for byte or not at all; a refusal names the findings that differ, if any do."""
    if built == received:
        return
    differences = compare_findings(received, built) or ["the report bodies differ"]
    raise ReportError(f"refusing to sign report on pairing {pairing!r}: " + "; ".join(differences))


def _check_ref(pairing: str, claimed: SnapshotRef, actual: SnapshotRef) -> None:
    """The report must name the very snapshots compared: party, version and digest."""
    if claimed != actual:
        raise ReportError(
            f"refusing to sign report on pairing {pairing!r}: it names the {actual.role} snapshot "
            f"as {claimed.party} version {claimed.version} ({claimed.digest[:16]}), but that "
            f"snapshot is {actual.party} version {actual.version} ({actual.digest[:16]})"
        )


def other_role(role: str) -> str:
    return SUBORDINATE if role == ROOT else ROOT


def _policy(pairing: PairingConfig, party: str) -> PairingPolicy:
    """The pairing as the acceptance rules see it, so the peer's role is checked too."""
    if pairing.role == ROOT:
        return PairingPolicy(pairing.name, root=party, subordinate=pairing.peer)
    return PairingPolicy(pairing.name, root=pairing.peer, subordinate=party)
