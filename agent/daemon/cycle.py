"""One agent cycle: collect, push, check the exchange's log, co-sign, write reports.

`Agent` holds what the cycle's steps share (`agent.daemon.parts`) and hands itself to each step:
collecting (`collecting`), building and pushing a snapshot (`push`), deciding whether to push and
after which snapshot of ours (`sync`), checking and co-signing the report (`cosign`) and writing it
(`writing`). Every receipt, peer snapshot and report passes the pairing's trusted state
(`agent.exchange.trusted`, held by the report check): payload type, a pinned key's signature, and
only then parsing. Each snapshot the agent builds carries the latest log checkpoint it verified.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from invsync.agent.config.settings import AgentConfig, PairingConfig, exchange_client
from invsync.agent.daemon import cosign, push, sync
from invsync.agent.daemon.collecting import collect_inventory
from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.push import PushOutcome
from invsync.agent.daemon.refusals import start_refusal_counts
from invsync.agent.daemon.report_check import ReportCheck
from invsync.agent.daemon.restore import Restore
from invsync.agent.daemon.rotation import (
    PeerKeys,
    load_own_keys,
    peer_policies,
    pinned_keys,
    pins_of,
)
from invsync.agent.daemon.writing import CycleResult, written_reports
from invsync.agent.exchange.recent_snapshots import RecentSnapshots
from invsync.agent.exchange.snapshot import BuildMemo
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.notify.outbox import Notifier
from invsync.agent.report.body import Pins
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.store.facts_cache import FactsCache
from invsync.agent.telemetry import metrics

__all__ = ["Agent", "CycleResult", "PushOutcome"]


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        clock: Callable[[], datetime] | None = None,
        *,
        keeps: bool = True,
    ) -> None:
        """`keeps`: keep what a cycle derived for the next one (a daemon). A one-shot process
        (`agent run --once`) has no next cycle and would hold it until it exits; it gives up
        the little reuse within its one cycle (a second report check's base read again, a
        restore's second draft encoded again)."""
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.store = AgentStore(config.database, keeps=keeps)
        self.keys = load_own_keys(config)
        own = [self.keys.current, *([self.keys.next] if self.keys.next else [])]
        self.store.record_own_keys([key.public for key in own], self.clock())
        self.server_keys = pinned_keys(config.server.signing_keys)
        self.peer_keys = PeerKeys(self.store, peer_policies(config), self.clock)
        self.client = exchange_client(config)
        for report in written_reports(config.report_dir):
            self.client.hold_report(report)
        self.log_watch = LogWatch(party=config.party, store=self.store, clock=self.clock)
        self.restorer = Restore(
            party=config.party,
            keys=self.keys,
            store=self.store,
            watch=self.log_watch,
            clock=self.clock,
        )
        self.checker = ReportCheck(
            config=config,
            store=self.store,
            client=self.client,
            keys=self.keys,
            server_keys=self.server_keys,
            peer_keys=self.peer_keys,
            clock=self.clock,
            log_watch=self.log_watch,
        )
        start_refusal_counts(config.pairings)
        self.notifier = Notifier(config.notify, self.store.notifications, config.party, self.clock)
        self.facts = FactsCache.install(self.store)
        self.recent = RecentSnapshots.install(wholes=keeps)
        self.held: list[CertRecord] | None = None
        self.encodings: dict[str, BuildMemo] | None = {} if keeps else None
        if keeps:
            self.store.blobs.held_whole = self._held_whole

    def _held_whole(self, payload_sha256: str) -> bytes | None:
        """A whole set this daemon holds, by its snapshot's payload digest (hex): a snapshot
        decoded or built and still held (its bytes as they are), else one of its last builds
        or a peer's last sets, joined again (agent.store.whole_chain)."""
        held = self.recent.full_of(payload_sha256)
        if held is not None:
            return held
        digest = bytes.fromhex(payload_sha256)
        for memo in (self.encodings or {}).values():
            whole = memo.whole(digest)
            if whole is not None:
                return whole
        return self.recent.whole_form(payload_sha256)

    def end_cycle(self) -> None:
        """Let go of what one cycle held (a daemon idles between cycles holding only each
        pairing's two newest decoded snapshots, `RecentSnapshots.end_pairing`), and keep what
        the peers' snapshots brought."""
        self.held = None
        self.store.forget_blobs()  # first: a failed flush must not keep them for the next cycle
        self.recent.end_cycle()
        self.facts.flush()

    def end_pairing(self, pairing: str) -> None:
        """Let go of what one pairing's part of the cycle read: its snapshots' blobs, and the
        decoded snapshots its report checks compared but the newest of each party, which its
        next part compares again (an agent of many pairings would hold every pairing's until
        the end)."""
        self.store.forget_blobs(pairing)
        parties = (self.config.party, self.config.pairings[pairing].peer)
        self.recent.end_pairing(pairing, parties)

    def close(self) -> None:
        self.recent.uninstall()
        try:
            self.client.close()
            self.facts.close()
        finally:
            self.store.close()

    def collect(self) -> int:
        """Read every configured source and replace the stored inventory in one transaction."""
        with metrics.COLLECTION_DURATION.time():
            count = collect_inventory(self)
        # What it derived is kept while the snapshot is pushed (agent.daemon.push), or at the
        # cycle's end: not here, where writing 100,000 rows would hold the push back.
        metrics.INVENTORY_RECORDS.set(count)
        return count

    def sync(self, pairing: PairingConfig) -> PushOutcome:
        """Push the next snapshot of `pairing` if its content changed or the last one ages
        (`agent.daemon.sync`)."""
        return sync.sync(self, pairing)

    def push(self, pairing: PairingConfig) -> int:
        """Build, sign and push the next snapshot of `pairing`, changed or not; its version
        (`agent.daemon.push`). A pending snapshot is re-pushed first."""
        push.resume_pending(self, pairing.name)
        now = self.clock()
        return push.send(self, pairing, push.draft(self, pairing, now), now, None).version

    def watch_log(self, pairing: PairingConfig) -> None:
        cosign.watch_log(self, pairing)

    def cosign(self, pairing: PairingConfig, wait_seconds: float) -> str:
        """Check the log; wait for the report on our latest snapshot, check it, sign it; its id."""
        return cosign.cosign(self, pairing, wait_seconds)

    def settle(self, pairing: PairingConfig, wait_seconds: float) -> CycleResult:
        """Co-sign each report on our latest snapshot until one carries every signature; write
        it (`agent.daemon.cosign`). Only a report every party signed makes events, queued for
        the cycle's end (`agent.notify`): one the peer has not co-signed yet may never be."""
        result = cosign.settle(self, pairing, wait_seconds)
        if result.body is not None and result.complete:
            self.notifier.report_written(result.payload, result.body)
        return result

    def pins(self) -> Pins:
        """The report signers this agent pins: the server's keys, ours, and the peers' with
        the rotations recorded so far."""
        rings = {name: self.peer_keys.ring(name) for name in self.peer_keys.peers}
        server = self.checker.server_ring().known()
        return pins_of(self.config.party, self.keys, server, rings)

    def _own_snapshot(self, pairing: str) -> Snapshot:
        return cosign.own_snapshot(self, pairing)

    def _check_report(self, pairing: PairingConfig, own: Snapshot, body_bytes: bytes) -> None:
        self.checker.check(pairing, own, body_bytes)
