"""One agent cycle: collect, push, check the exchange's log, co-sign, write reports.

What is checked before co-signing is `agent.daemon.report_check`: the agent never takes the server's
word for a report. Every receipt, peer snapshot and report passes the pairing's trusted state
(`agent.exchange.trusted`, held by the report check): payload type, a pinned key's signature, and
only then parsing. The reports the agent writes show their signatures as its configuration pins
them, never as the keys a report lists about itself.

Before co-signing, the agent checks the exchange's transparency log (`agent.daemon.log_watch`),
and each snapshot it builds carries the latest log checkpoint it verified. A database older than
what the server accepted from it (restored from a backup) continues after our latest snapshot in
the log (`agent.daemon.restore`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invsync.agent.config.settings import AgentConfig, PairingConfig
from invsync.agent.daemon.freshness import PushReason, push_reason
from invsync.agent.daemon.log_reading import take_receipt
from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.report_check import PeerArrived, ReportCheck
from invsync.agent.daemon.restore import Restore, is_behind, refused_floor, reported_version
from invsync.agent.daemon.rotation import (
    PeerKeys,
    load_own_keys,
    peer_policies,
    pinned_keys,
    pins_of,
)
from invsync.agent.errors import ReportError
from invsync.agent.exchange import envelope
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet, Refused
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, build_payload, decode_payload
from invsync.agent.files import write_atomically
from invsync.agent.inventory.collect import collect
from invsync.agent.inventory.scope import root_scope, subordinate_scope
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, Snapshot
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Pins,
    ReportVerification,
    parse_report_body,
    verify_report,
    write_report_file,
)
from invsync.agent.report.files import page, report_files
from invsync.agent.report.render.csv import findings_csv
from invsync.agent.report.render.text import report_markdown
from invsync.agent.sources.ct_client import CtFetch
from invsync.agent.sources.detect import AUDIT_SCOPE
from invsync.agent.sources.registry import read_source
from invsync.agent.store.agent_store import AgentStore, SentSnapshot
from invsync.agent.telemetry import metrics

log = logging.getLogger("invsync.agent")
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class CycleResult:
    pairing: str
    version: int
    report_id: str
    report_path: Path
    markdown_path: Path
    verification: ReportVerification

    @property
    def complete(self) -> bool:
        return self.verification.complete


@dataclass(frozen=True)
class _Draft:
    """A pairing's next snapshot, built but not yet signed, with what was known to build it."""

    last: SentSnapshot | None  # the latest sent snapshot it follows
    payload: bytes
    version: int
    expires_at: datetime
    keys: list[SigningKey]  # which of our keys sign it
    announces: bool  # it announces our next signing key


@dataclass(frozen=True)
class PushOutcome:
    """The pairing's latest snapshot after `Agent.sync`: pushed now (with why) or kept."""

    version: int
    reason: PushReason | None  # None: the last snapshot was kept
    expires_at: datetime

    @property
    def pushed(self) -> bool:
        return self.reason is not None


class Agent:
    def __init__(self, config: AgentConfig, clock: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.store = AgentStore(config.database)
        self.keys = load_own_keys(config)
        self.server_keys = pinned_keys(config.server.signing_keys)
        self.peer_keys = PeerKeys(self.store, peer_policies(config), self.clock)
        self.client = ExchangeClient(
            config.server,
            timeout=config.rpc_timeout_seconds,
            retry=config.retry,
            keepalive=config.keepalive,
        )
        self.log_watch = LogWatch(
            party=config.party, server_keys=self.server_keys, store=self.store, clock=self.clock
        )
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

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def collect(self) -> int:
        """Read every configured source and replace the stored inventory in one transaction."""
        with metrics.COLLECTION_DURATION.time():
            count = self._collect()
        metrics.INVENTORY_RECORDS.set(count)
        return count

    def _collect(self) -> int:
        now = self.clock()
        ctx = SourceContext(now=now, party_ca_spkis=self._pairing_spkis())
        audits = Facts.combine(
            _facts(read_source(a.spec, replace(ctx, audit=a.audit), kind=AUDIT_SCOPE))
            for a in self.config.audit_scope
        )
        state = self.config.database.with_suffix(".ct-progress.json")
        collected = collect(
            [(spec, None) for spec in self.config.sources],
            ctx,
            attribution=self.config.attribution,
            ct_state=state,
            base=audits,
        )
        records = collected.assembled.records
        self.store.replace_inventory(records, now)
        collected.commit_ct_progress(state)
        log.info(
            "party=%s collected %d certificates",
            self.config.party,
            len(records),
            extra={"party": self.config.party},
        )
        return len(records)

    def _pairing_spkis(self) -> list[bytes]:
        """The root CA keys of every pairing: CT entries they signed belong in the inventory."""
        return self.config.ca_spkis()

    def sync(self, pairing: PairingConfig) -> PushOutcome:
        """Push the next snapshot of `pairing` if its content changed or the last one ages.

        The refresh age (`agent.snapshot_refresh_seconds`) comes before the expiry, so an agent
        that runs its cycles keeps a valid snapshot at the server even when nothing changes.
        When the server holds a later snapshot of ours than this database (restored from a
        backup), the chain continues after it, taken from the log (`agent.daemon.restore`).
        """
        try:
            self._resume_pending(pairing.name)
            ahead, named = self._reported_ahead(pairing)
            if ahead:
                self._restore(pairing, ahead, named)
            return self._sync(pairing, restored=bool(ahead))
        except Refused as e:
            if not is_behind(e):
                raise
            pending = self.store.pending_snapshot(pairing.name)  # the version refused
            floor = refused_floor(e, pending.version) if pending else 0
            self._restore(pairing, f"the server refused our push: {e}", floor)
            return self._sync(pairing, restored=True)

    def _sync(self, pairing: PairingConfig, *, restored: bool) -> PushOutcome:
        """`sync` once the server's view of our chain is ours: a restored chain always pushes."""
        now = self.clock()
        draft = self._draft(pairing, now)
        last = draft.last
        reason = (
            PushReason.RESTORED
            if restored
            else push_reason(
                last.payload if last else None,
                last.issued_at if last else None,
                draft.payload,
                now=now,
                refresh_after=timedelta(seconds=self.config.snapshot_refresh_seconds),
                announces=draft.announces,
            )
        )
        if last is not None and reason is None:
            log.info(
                "party=%s pairing=%s unchanged since version=%d",
                self.config.party,
                pairing.name,
                last.version,
                extra={
                    "party": self.config.party,
                    "pairing": pairing.name,
                    "version": last.version,
                },
            )
            return PushOutcome(last.version, None, last.expires_at)
        return self._send(pairing, draft, now, reason)

    def _reported_ahead(self, pairing: PairingConfig) -> tuple[str, int]:
        """Why this database is behind, when the server's latest report names a version of ours
        it never sent, and that version; ("", 0) otherwise."""
        last = self.store.latest_sent_snapshot(pairing.name)
        known = last.version if last else 0
        named = reported_version(self.client, self.checker.trust(pairing), pairing.role)
        if named <= known:
            return "", 0
        why = f"the server's latest report names our version {named}, this database {known}"
        return why, named

    def _restore(self, pairing: PairingConfig, why: str, floor: int) -> None:
        self.restorer.restore(self.client, self.checker.trust(pairing), why, floor)

    def watch_log(self, pairing: PairingConfig) -> None:
        """Check the exchange's log for the pairing (`agent.daemon.log_watch`): a log that does
        not hold together is recorded and raised, so nothing is co-signed."""
        self.log_watch.check(self.client, self.checker.trust(pairing))

    def push(self, pairing: PairingConfig) -> int:
        """Build, sign and push the next snapshot of `pairing`, changed or not; its version.

        The snapshot is stored as pending before it is pushed and marked sent once the server's
        receipt is in. A pending one, left by a cycle whose receipt was lost, is re-pushed first
        byte for byte (the server answers an identical re-push with its stored receipt), so the
        next version's previous_digest names the snapshot the server holds.
        """
        self._resume_pending(pairing.name)
        now = self.clock()
        return self._send(pairing, self._draft(pairing, now), now, None).version

    def _draft(self, pairing: PairingConfig, now: datetime) -> _Draft:
        """The version after the last sent one, from the stored inventory, not yet signed."""
        last = self.store.latest_sent_snapshot(pairing.name)
        verified = self.checker.trust(pairing).state.checkpoint
        keys, announce = self.keys.for_snapshot(last)
        version = (last.version if last else 0) + 1
        expires_at = now + timedelta(seconds=self.config.snapshot_validity_seconds)
        spkis = pairing.issuer_spkis()
        payload = build_payload(
            party=self.config.party,
            pairing=pairing.name,
            role=pairing.role,
            version=version,
            issued_at=now,
            expires_at=expires_at,
            previous_digest=bytes.fromhex(last.payload_sha256) if last else b"",
            scope_issuer_spki=spkis,
            records=self._scoped(pairing, spkis),
            profiles=self.config.profiles,
            acknowledgements=self.config.acknowledgements,
            next_signing_key=announce,
            log_checkpoint=verified.note if verified else b"",
        )
        return _Draft(last, payload, version, expires_at, keys, bool(announce))

    def _send(
        self, pairing: PairingConfig, draft: _Draft, now: datetime, reason: PushReason | None
    ) -> PushOutcome:
        env = envelope.sign(SNAPSHOT_PAYLOAD_TYPE, draft.payload, draft.keys)
        self.store.record_sent_snapshot(
            pairing.name,
            draft.version,
            draft.payload,
            env.payload_type,
            [(s.keyid, s.sig) for s in env.signatures],
            now,
            draft.expires_at,
            pending=True,
        )
        self._push_pending(pairing.name, draft.version, env)
        log.info(
            "party=%s pairing=%s pushed version=%d (%s)",
            self.config.party,
            pairing.name,
            draft.version,
            reason.value if reason else "requested",
            extra={"party": self.config.party, "pairing": pairing.name, "version": draft.version},
        )
        metrics.LAST_EXCHANGE.labels(pairing.name).set(time.time())
        return PushOutcome(draft.version, reason, draft.expires_at)

    def _push_pending(self, pairing: str, version: int, env: Envelope) -> None:
        """Push; the snapshot is sent once the trusted state took the server's receipt for it,
        which is kept in the same transaction. A refused receipt leaves it pending."""
        receipt = self.client.push(env)
        trust = self.checker.trust(self.config.pairings[pairing])
        with trust.staged() as staged:  # adopted in memory once the database took it
            take_receipt(self.client, staged, receipt, version=version, payload=env.payload)
            self.store.record_receipt(pairing, version, staged.state, self.clock())

    def _resume_pending(self, pairing: str) -> None:
        """Re-push the pending snapshot, if any; one the server refuses was never accepted."""
        pending = self.store.pending_snapshot(pairing)
        if pending is None:
            return
        sigs = tuple(Sig(keyid, sig) for keyid, sig in pending.signatures)
        env = Envelope(pending.payload_type, pending.payload, sigs)
        try:
            self._push_pending(pairing, pending.version, env)
        except Refused as e:
            if is_behind(e):
                raise  # the server holds a later version of ours: `sync` restores
            # The server never accepted this version (an identical re-push would be answered
            # with its receipt), so the number is free: the next snapshot is built for it.
            self.store.drop_pending(pairing, pending.version)
            log.warning(
                "party=%s pairing=%s pending version=%d refused, rebuilt: %s",
                self.config.party,
                pairing,
                pending.version,
                e,
            )
            return
        log.info(
            "party=%s pairing=%s re-pushed pending version=%d",
            self.config.party,
            pairing,
            pending.version,
        )

    def _scoped(self, pairing: PairingConfig, spkis: list[bytes]) -> list[CertRecord]:
        records = self.store.inventory()
        if pairing.role == ROOT:
            return root_scope(
                records,
                issuer_spkis=spkis,
                subordinate=pairing.peer,
                subject_organizations=list(pairing.subject_organizations),
            )
        return subordinate_scope(records, issuer_spkis=spkis)

    def cosign(self, pairing: PairingConfig, wait_seconds: float) -> str:
        """Check the log; wait for the report on our latest snapshot, check it, sign it; returns
        its id."""
        own = self._own_snapshot(pairing.name)
        self.watch_log(pairing)
        env, rid = self._await_report(pairing, own, wait_seconds)
        self._cosign_report(pairing, own, env, rid)
        return rid

    def _cosign_report(
        self, pairing: PairingConfig, own: Snapshot, env: Envelope, rid: str
    ) -> None:
        """Sign a report `_report_naming` took from the trusted state, once rebuilt here."""
        self._check_report(pairing, own, env.payload)
        key = self.checker.report_key(pairing.name)
        sig = Sig(key.public.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, env.payload)))
        self.client.sign_report(pairing.name, rid, sig)
        self.store.record_cosigned(rid, pairing.name, self.clock())
        log.info("party=%s pairing=%s co-signed report=%s", self.config.party, pairing.name, rid)

    def settle(self, pairing: PairingConfig, wait_seconds: float) -> CycleResult:
        """Co-sign each report on our latest snapshot until one carries every signature; write it.

        The peer may push again while we sign, making a newer report on our same snapshot; that
        one is checked and co-signed too, so the cycle ends on the report both parties signed.
        If time runs out, the latest report is written as it stands and `complete` says so.
        The exchange's log is checked first: nothing is co-signed while it does not hold together.
        """
        own = self._own_snapshot(pairing.name)
        self.watch_log(pairing)
        deadline = time.monotonic() + wait_seconds
        while True:
            found = self._report_naming(pairing, own)
            if found is not None and not self.store.has_cosigned(found[1]):
                try:
                    self._cosign_report(pairing, own, *found)
                    continue
                except PeerArrived:
                    pass  # the report on both snapshots is being made: poll for it
            if found is not None and verify_report(found[0], self.pins()).complete:
                return self._write(pairing.name, found[1], found[0])
            if time.monotonic() > deadline:
                return self._timed_out(pairing.name, own, found, wait_seconds)
            time.sleep(POLL_SECONDS)

    def _timed_out(
        self,
        pairing: str,
        own: Snapshot,
        found: tuple[Envelope, str] | None,
        wait_seconds: float,
    ) -> CycleResult:
        if found is None:
            raise ReportError(
                f"pairing {pairing!r}: no report on our snapshot version {own.header.version} "
                f"after {wait_seconds:.0f} s; has the peer pushed?"
            )
        return self._write(pairing, found[1], found[0])

    def _own_snapshot(self, pairing: str) -> Snapshot:
        sent = self.store.latest_sent_snapshot(pairing)
        if sent is None:
            raise ReportError(f"pairing {pairing!r}: this agent has not pushed a snapshot yet")
        return decode_payload(sent.payload)

    def _await_report(
        self, pairing: PairingConfig, own: Snapshot, wait_seconds: float
    ) -> tuple[Envelope, str]:
        deadline = time.monotonic() + wait_seconds
        while True:
            found = self._report_naming(pairing, own)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise ReportError(
                    f"pairing {pairing.name!r}: no report on our snapshot version "
                    f"{own.header.version} after {wait_seconds:.0f} s; has the peer pushed?"
                )
            time.sleep(POLL_SECONDS)

    def _report_naming(self, pairing: PairingConfig, own: Snapshot) -> tuple[Envelope, str] | None:
        """The server's latest report if it names our snapshot `own`. The trusted state checks
        its payload type and the pinned server key's signature before the body is parsed."""
        try:
            report = self.client.report(pairing.name)
        except NotFoundYet:
            return None
        env = Envelope.from_pb(report.envelope)
        body = self.checker.trust(pairing).verify_report(env, report_id=report.report_id)
        ref = body.root if body.root.party == self.config.party else body.subordinate
        if ref.digest != own.payload_sha256:
            return None
        return env, body.report_id

    def pins(self) -> Pins:
        """The report signers this agent pins: the server's keys, ours, and the peers' with
        the rotations recorded so far."""
        rings = {name: self.peer_keys.ring(name) for name in self.peer_keys.peers}
        return pins_of(self.config.party, self.keys, self.server_keys, rings)

    def _check_report(self, pairing: PairingConfig, own: Snapshot, body_bytes: bytes) -> None:
        self.checker.check(pairing, own, body_bytes)

    def _write(self, pairing: str, rid: str, env: Envelope) -> CycleResult:
        directory = self.config.report_dir
        directory.mkdir(parents=True, exist_ok=True)
        body = parse_report_body(env.payload)
        metrics.OPEN_FINDINGS.set(pairing, body.findings)
        stem = f"{pairing}-{body.as_of.strftime('%Y%m%dT%H%M%SZ')}-{rid[:12]}"
        json_path = directory / f"{stem}.report.json"
        md_path = directory / f"{stem}.md"
        write_report_file(json_path, env)
        own = self.store.latest_sent_snapshot(pairing)
        version = own.version if own else 0
        pins = self.pins()
        verification = verify_report(env, pins)
        write_atomically(md_path, report_markdown(body, verification))
        files = report_files(directory)
        current = next(f for f in files if f.report_id == rid)
        write_atomically(json_path.with_name(f"{stem}.html"), page(current, files, pins))
        write_atomically(json_path.with_name(f"{stem}.csv"), findings_csv(body.findings))
        return CycleResult(pairing, version, rid, json_path, md_path, verification)


def _facts(read: Facts | CtFetch) -> Facts:
    return read.facts if isinstance(read, CtFetch) else read
