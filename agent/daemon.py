"""One agent cycle: collect, push, co-sign, write reports.

The agent never takes the server's word for a report: it fetches the peer's signed snapshot,
verifies it with the peer's pinned key, recomputes the findings itself and signs only a body
byte-identical to the one it would have built. Otherwise it refuses and says what differs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent import envelope, metrics
from agent.acceptance import PairingPolicy, PartyPolicy
from agent.client import ExchangeClient, NotFoundYet, Refused
from agent.collect import collect, read_source
from agent.config import AgentConfig, PairingConfig
from agent.envelope import Envelope, Sig, pae, verify_or_raise
from agent.errors import ReportError
from agent.facts import Facts, SourceContext
from agent.files import write_atomically
from agent.findings import Finding
from agent.freshness import PushReason, push_reason
from agent.keys import SigningKey, VerifyKey, load_signing_key, load_verify_key
from agent.model import ROOT, SUBORDINATE, Side, Snapshot
from agent.reconcile import reconcile
from agent.record import CertRecord
from agent.render import report_markdown
from agent.render_csv import findings_csv
from agent.report import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    ReportVerification,
    Signer,
    SnapshotRef,
    build_report_body,
    compare_findings,
    parse_report_body,
    verify_report,
    write_report_file,
)
from agent.report_files import page, report_files
from agent.rotation import OwnKeys, PeerKeys
from agent.rules.stale_peer import never_sent
from agent.scope import root_scope, subordinate_scope
from agent.snapshot import SNAPSHOT_PAYLOAD_TYPE, build_payload, decode_payload
from agent.sources.ct_client import CtFetch
from agent.sources.detect import AUDIT_SCOPE
from agent.store import AgentStore, SentSnapshot

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


class PeerArrived(ReportError):
    """A report says the peer sent no snapshot, but the server now holds one.

    Expected when both parties push their first snapshots at once: the report made on the first
    push is overtaken by the one made on the second, which the cycle goes on to co-sign.
    """


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
        next_key = config.next_signing_key
        self.keys = OwnKeys(
            load_signing_key(config.signing_key), load_signing_key(next_key) if next_key else None
        )
        self.server_keys = _keys(config.server.signing_keys)
        peers = {name: PartyPolicy(name, _keys(paths)) for name, paths in config.peers.items()}
        self.peer_keys = PeerKeys(self.store, peers, self.clock)
        self.client = ExchangeClient(
            config.server,
            timeout=config.rpc_timeout_seconds,
            retry=config.retry,
            keepalive=config.keepalive,
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
        """
        self._resume_pending(pairing.name)
        now = self.clock()
        last = self.store.latest_sent_snapshot(pairing.name)
        keys, announce = self.keys.for_snapshot(last)
        payload = self._build(pairing, last, now, announce)
        reason = push_reason(
            last.payload if last else None,
            last.issued_at if last else None,
            payload,
            now=now,
            refresh_after=timedelta(seconds=self.config.snapshot_refresh_seconds),
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
        return self._send(pairing, payload, keys, now, reason)

    def push(self, pairing: PairingConfig) -> int:
        """Build, sign and push the next snapshot of `pairing`, changed or not; its version.

        The snapshot is stored as pending before it is pushed and marked sent once the server's
        receipt is in. A pending one, left by a cycle whose receipt was lost, is re-pushed first
        byte for byte (the server answers an identical re-push with its stored receipt), so the
        next version's previous_digest names the snapshot the server holds.
        """
        self._resume_pending(pairing.name)
        now = self.clock()
        last = self.store.latest_sent_snapshot(pairing.name)
        keys, announce = self.keys.for_snapshot(last)
        payload = self._build(pairing, last, now, announce)
        return self._send(pairing, payload, keys, now, None).version

    def _build(
        self, pairing: PairingConfig, last: SentSnapshot | None, now: datetime, announce: bytes
    ) -> bytes:
        """The payload of the version after `last`, from the stored inventory."""
        spkis = pairing.issuer_spkis()
        return build_payload(
            party=self.config.party,
            pairing=pairing.name,
            role=pairing.role,
            version=(last.version if last else 0) + 1,
            issued_at=now,
            expires_at=now + timedelta(seconds=self.config.snapshot_validity_seconds),
            previous_digest=bytes.fromhex(last.payload_sha256) if last else b"",
            scope_issuer_spki=spkis,
            records=self._scoped(pairing, spkis),
            profiles=self.config.profiles,
            acknowledgements=self.config.acknowledgements,
            next_signing_key=announce,
        )

    def _send(
        self,
        pairing: PairingConfig,
        payload: bytes,
        keys: list[SigningKey],
        now: datetime,
        reason: PushReason | None,
    ) -> PushOutcome:
        header = decode_payload(payload).header
        env = envelope.sign(SNAPSHOT_PAYLOAD_TYPE, payload, keys)
        self.store.record_sent_snapshot(
            pairing.name,
            header.version,
            payload,
            env.payload_type,
            [(s.keyid, s.sig) for s in env.signatures],
            now,
            header.expires_at,
            pending=True,
        )
        self._push_pending(pairing.name, header.version, env)
        log.info(
            "party=%s pairing=%s pushed version=%d (%s)",
            self.config.party,
            pairing.name,
            header.version,
            reason.value if reason else "requested",
            extra={"party": self.config.party, "pairing": pairing.name, "version": header.version},
        )
        metrics.LAST_EXCHANGE.labels(pairing.name).set(time.time())
        return PushOutcome(header.version, reason, header.expires_at)

    def _push_pending(self, pairing: str, version: int, env: Envelope) -> None:
        receipt = self.client.push(env)
        verify_or_raise(receipt, self.server_keys, who="the exchange server (receipt)")
        self.store.mark_sent(pairing, version)

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
        """Wait for the report on our latest snapshot, check it, sign it; returns its id."""
        own = self._own_snapshot(pairing.name)
        env, rid = self._await_report(pairing.name, own, wait_seconds)
        self._cosign_report(pairing, own, env, rid)
        return rid

    def _cosign_report(
        self, pairing: PairingConfig, own: Snapshot, env: Envelope, rid: str
    ) -> None:
        verify_or_raise(env, self.server_keys, who="the exchange server (report)")
        self._check_report(pairing, own, env.payload)
        key = self._report_key(pairing.name)
        sig = Sig(key.public.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, env.payload)))
        self.client.sign_report(pairing.name, rid, sig)
        self.store.record_cosigned(rid, pairing.name, self.clock())
        log.info("party=%s pairing=%s co-signed report=%s", self.config.party, pairing.name, rid)

    def settle(self, pairing: PairingConfig, wait_seconds: float) -> CycleResult:
        """Co-sign each report on our latest snapshot until one carries every signature; write it.

        The peer may push again while we sign, making a newer report on our same snapshot; that
        one is checked and co-signed too, so the cycle ends on the report both parties signed.
        If time runs out, the latest report is written as it stands and `complete` says so.
        """
        own = self._own_snapshot(pairing.name)
        deadline = time.monotonic() + wait_seconds
        while True:
            found = self._report_naming(pairing.name, own)
            if found is not None and not self.store.has_cosigned(found[1]):
                try:
                    self._cosign_report(pairing, own, *found)
                    continue
                except PeerArrived:
                    pass  # the report on both snapshots is being made: poll for it
            if found is not None and verify_report(found[0]).complete:
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
        self, pairing: str, own: Snapshot, wait_seconds: float
    ) -> tuple[Envelope, str]:
        deadline = time.monotonic() + wait_seconds
        while True:
            found = self._report_naming(pairing, own)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise ReportError(
                    f"pairing {pairing!r}: no report on our snapshot version "
                    f"{own.header.version} after {wait_seconds:.0f} s; has the peer pushed?"
                )
            time.sleep(POLL_SECONDS)

    def _report_naming(self, pairing: str, own: Snapshot) -> tuple[Envelope, str] | None:
        try:
            report = self.client.report(pairing)
        except NotFoundYet:
            return None
        env = Envelope.from_pb(report.envelope)
        body = parse_report_body(env.payload)
        ref = body.root if body.root.party == self.config.party else body.subordinate
        if ref.digest != own.payload_sha256:
            return None
        return env, report.report_id

    def _check_report(self, pairing: PairingConfig, own: Snapshot, body_bytes: bytes) -> None:
        """Refuse unless the body is exactly the one this agent builds from the two snapshots."""
        body = parse_report_body(body_bytes)
        peer_role = _other_role(pairing.role)
        claimed = getattr(body, peer_role)
        peer = None if claimed.version == 0 else self._fetch_peer(pairing, claimed.version)
        if peer is None:
            self._check_peer_absent(pairing)
            peer_ref = SnapshotRef.absent(pairing.peer, peer_role)
        else:
            peer_ref = _ref(peer, peer_role)
        refs = {pairing.role: _ref(own, pairing.role), peer_role: peer_ref}
        for role, actual in refs.items():
            _check_ref(pairing.name, getattr(body, role), actual)
        self._check_signers(pairing, body.signers)
        findings = self._findings(pairing, own, peer, body.as_of)
        mine = build_report_body(
            pairing=pairing.name,
            as_of=body.as_of,
            root=refs[ROOT],
            subordinate=refs[SUBORDINATE],
            findings=findings,
            signers=body.signers,
            previous=self._previous_report(pairing.name, body.previous_report),
        )
        if mine != body_bytes:
            my_findings = parse_report_body(mine).findings
            differences = compare_findings(body.findings, my_findings) or [
                "the report bodies differ"
            ]
            raise ReportError(
                f"refusing to sign report on pairing {pairing.name!r}: " + "; ".join(differences)
            )

    def _findings(
        self, pairing: PairingConfig, own: Snapshot, peer: Snapshot | None, at: datetime
    ) -> tuple[Finding, ...]:
        if peer is None:
            return (never_sent(pairing.peer, pairing.name),)
        own_side = Side.of(own, previous=self._own_previous(pairing.name, own))
        peer_side = Side.of(peer, previous=self._peer_previous(pairing, peer))
        root, sub = (own_side, peer_side) if pairing.role == ROOT else (peer_side, own_side)
        return reconcile(root, sub, at)

    def _check_peer_absent(self, pairing: PairingConfig) -> None:
        """A report saying the peer sent nothing is signed only if the server indeed has nothing."""
        try:
            self.client.fetch_peer_snapshot(pairing.name, 0)
        except NotFoundYet:
            return
        raise PeerArrived(
            f"refusing to sign report on pairing {pairing.name!r}: it says {pairing.peer} has "
            "sent no snapshot, but the server holds one"
        )

    def _previous_report(self, pairing: str, rid: str | None) -> ReportBody | None:
        """The report the server's body says it continues, checked as the server's own.

        first_seen and resolved depend on it, so it must be a report the server signed for this
        pairing: its server signature is verified with the pinned keys before it is parsed.
        """
        if rid is None:
            return None
        try:
            stored = self.client.report(pairing, rid)
        except NotFoundYet as e:
            raise ReportError(
                f"refusing to sign report on pairing {pairing!r}: the server does not have "
                f"the previous report {rid} it names"
            ) from e
        env = Envelope.from_pb(stored.envelope)
        verify_or_raise(env, self.server_keys, who="the exchange server (previous report)")
        previous = parse_report_body(env.payload)
        if previous.report_id != rid or previous.pairing != pairing:
            raise ReportError(
                f"refusing to sign report on pairing {pairing!r}: the server sent another "
                f"report ({previous.report_id}) for the previous report {rid}"
            )
        return previous

    def _own_previous(self, pairing: str, own: Snapshot) -> Snapshot | None:
        sent = self.store.sent_snapshot(pairing, own.header.version - 1)
        return None if sent is None else decode_payload(sent.payload)

    def _peer_previous(self, pairing: PairingConfig, peer: Snapshot) -> Snapshot | None:
        """The peer's snapshot before the compared one, verified like it (for `disappeared`)."""
        if peer.header.version <= 1:
            return None
        try:
            return self._fetch_peer(pairing, peer.header.version - 1, current=False)
        except NotFoundYet:
            return None

    def _fetch_peer(self, pairing: PairingConfig, version: int, current: bool = True) -> Snapshot:
        env = self.client.fetch_peer_snapshot(pairing.name, version)
        return self.peer_keys.verify(
            env,
            pairing.peer,
            _policy(pairing, self.config.party),
            self.clock() if current else None,
            lambda earlier: self.client.fetch_peer_snapshot(pairing.name, earlier),
            version,
        )

    def _report_key(self, pairing: str) -> SigningKey:
        """Our key in force in `pairing`: the new one once a snapshot signed by it is receipted."""
        return self.keys.for_reports(self.store.latest_sent_snapshot(pairing))

    def _check_signers(self, pairing: PairingConfig, signers: Sequence[Signer]) -> None:
        """Every key the report expects must be one this agent pins for that role."""
        ours = self._report_key(pairing.name).public.keyid
        pinned = {
            "server": set(self.server_keys),
            pairing.role: {ours},
            _other_role(pairing.role): set(
                self.peer_keys.ring(pairing.peer).keys_for(pairing.name)
            ),
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
        verification = verify_report(env)
        write_atomically(md_path, report_markdown(body, verification))
        files = report_files(directory)
        current = next(f for f in files if f.report_id == rid)
        write_atomically(json_path.with_name(f"{stem}.html"), page(current, files))
        write_atomically(json_path.with_name(f"{stem}.csv"), findings_csv(body.findings))
        return CycleResult(pairing, version, rid, json_path, md_path, verification)


def _facts(read: Facts | CtFetch) -> Facts:
    return read.facts if isinstance(read, CtFetch) else read


def _ref(snapshot: Snapshot, role: str) -> SnapshotRef:
    header = snapshot.header
    return SnapshotRef(header.party, role, header.version, snapshot.payload_sha256)


def _check_ref(pairing: str, claimed: SnapshotRef, actual: SnapshotRef) -> None:
    """The report must name the very snapshots compared: party, version and digest."""
    if claimed != actual:
        raise ReportError(
            f"refusing to sign report on pairing {pairing!r}: it names the {actual.role} snapshot "
            f"as {claimed.party} version {claimed.version} ({claimed.digest[:16]}), but that "
            f"snapshot is {actual.party} version {actual.version} ({actual.digest[:16]})"
        )


def _other_role(role: str) -> str:
    return SUBORDINATE if role == ROOT else ROOT


def _policy(pairing: PairingConfig, party: str) -> PairingPolicy:
    """The pairing as the acceptance rules see it, so the peer's role is checked too."""
    if pairing.role == ROOT:
        return PairingPolicy(pairing.name, root=party, subordinate=pairing.peer)
    return PairingPolicy(pairing.name, root=pairing.peer, subordinate=party)


def _keys(paths: tuple[Path, ...]) -> dict[str, VerifyKey]:
    keys = [load_verify_key(p) for p in paths]
    return {k.keyid: k for k in keys}
