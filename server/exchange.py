"""The exchange service's domain logic, free of gRPC: accept, serve and sign.

`service.py` adapts it to gRPC. Every method takes the caller's party as established from the
TLS certificate by `auth.py`; none trusts a party named in a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from invsync.agent.exchange.acceptance import AcceptancePolicy, accept
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.receipt import receipt_for, sign_receipt
from invsync.agent.exchange.rejections import (
    AccessDenied,
    BadReportSignature,
    NotFound,
    SnapshotRejected,
)
from invsync.agent.exchange.snapshot import decode_payload, from_chunks
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server import metrics
from invsync.server.reconciling import ReportMaker, party_keyring
from invsync.server.store import ServerStore, StoredReport
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.server")


class Exchange:
    def __init__(
        self,
        *,
        name: str,
        store: ServerStore,
        policy: AcceptancePolicy,
        signing_key: SigningKey,
        reports: ReportMaker,
        max_snapshot_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.store = store
        self.policy = policy
        self.key = signing_key
        self.reports = reports
        self.max_snapshot_bytes = max_snapshot_bytes
        self.clock = clock
        # One writer at a time: acceptance reads the last version, then commits the next.
        self._lock = threading.Lock()

    def push(self, tls_party: str | None, chunks: Iterable[pb.SnapshotChunk]) -> bytes:
        """Accept a streamed snapshot; returns the serialized signed receipt, after commit."""
        env: Envelope | None = None
        try:
            env = from_chunks(chunks, self.max_snapshot_bytes)
            with self._lock:
                receipt = self._accept(tls_party, env)
        except SnapshotRejected as e:
            party, pairing = self._labels(tls_party, env)
            metrics.SNAPSHOTS_RECEIVED.labels(party, pairing, metrics.REJECTED, e.rule).inc()
            raise
        return receipt

    def _accept(self, tls_party: str | None, env: Envelope) -> bytes:
        accepted = accept(
            env,
            tls_party=tls_party,
            policy=self.policy,
            last=self.store.last_accepted,
            now=self.clock(),
            rotations=self.store.rotations,
        )
        header = accepted.snapshot.header
        if accepted.duplicate:
            receipt = self.store.receipt(header.party, header.pairing, header.version)
            assert receipt is not None  # a duplicate was accepted before, with its receipt
            metrics.SNAPSHOTS_RECEIVED.labels(
                header.party, header.pairing, metrics.ACCEPTED, "duplicate"
            ).inc()
            return receipt
        receipt = self._receipt(header.party, header.pairing, header.version, env)
        self.store.commit_snapshot(
            header.party, header.pairing, header.version, env, receipt, accepted.rotation
        )
        if accepted.rotation is not None:
            self._log_rotation(accepted.rotation)
        log.info(
            "accepted snapshot party=%s pairing=%s version=%d records=%d",
            header.party,
            header.pairing,
            header.version,
            header.record_count,
            extra={
                "party": header.party,
                "pairing": header.pairing,
                "version": header.version,
            },
        )
        metrics.SNAPSHOTS_RECEIVED.labels(header.party, header.pairing, metrics.ACCEPTED, "").inc()
        metrics.LAST_ACCEPTED.labels(header.party, header.pairing).set(self.clock().timestamp())
        self._reconcile(header.pairing)
        return receipt

    def fetch_peer_snapshot(self, tls_party: str | None, pairing: str, version: int) -> Envelope:
        peer = self._peer_of(tls_party, pairing)
        env = self.store.snapshot(peer, pairing, version)
        if env is None:
            which = f"version {version}" if version else "any snapshot"
            raise NotFound(f"pairing {pairing!r}: party {peer!r} has not pushed {which}")
        return env

    def report(self, tls_party: str | None, pairing: str, report_id: str) -> StoredReport:
        self._peer_of(tls_party, pairing)
        stored = self.store.report(pairing, report_id)
        if stored is None:
            raise NotFound(f"pairing {pairing!r}: no report {report_id or 'yet'}")
        return stored

    def add_signature(
        self, tls_party: str | None, pairing: str, report_id: str, sig: Sig
    ) -> StoredReport:
        stored = self.report(tls_party, pairing, report_id)
        assert tls_party is not None  # report() checked membership
        key = party_keyring(self.policy, self.store, tls_party).keys_for(pairing).get(sig.keyid)
        data = pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)
        if key is None or not key.verify(sig.sig, data):
            raise BadReportSignature(
                f"report {report_id}: signature by key {sig.keyid[:16]} does not verify "
                f"with a key in force for party {tls_party!r} in pairing {pairing!r}"
            )
        self.store.add_report_signature(stored.report_id, sig)
        log.info("party=%s signed report=%s pairing=%s", tls_party, report_id, pairing)
        return self.report(tls_party, pairing, report_id)

    def _log_rotation(self, rotation: Rotation) -> None:
        old = ", ".join(k.keyid[:16] for k in rotation.old_keys)
        log.info(
            "party=%s pairing=%s rotated its signing key at version=%d: %s -> %s",
            rotation.party,
            rotation.pairing,
            rotation.version,
            old,
            rotation.new_key.keyid[:16],
            extra={
                "party": rotation.party,
                "pairing": rotation.pairing,
                "version": rotation.version,
            },
        )

    def _labels(self, tls_party: str | None, env: Envelope | None) -> tuple[str, str]:
        """Metric labels of a rejected push: configured names only, never a sender's free text."""
        party = tls_party if tls_party in self.policy.parties else metrics.UNKNOWN
        pairing = metrics.UNKNOWN
        if env is not None:
            try:
                claimed = decode_payload(env.payload).header.pairing
            except Exception:  # a malformed payload names no pairing
                claimed = ""
            if claimed in self.policy.pairings:
                pairing = claimed
        return str(party), pairing

    def _peer_of(self, tls_party: str | None, pairing: str) -> str:
        spec = self.policy.pairings.get(pairing)
        if tls_party is None or spec is None or tls_party not in (spec.root, spec.subordinate):
            raise AccessDenied(f"party {tls_party!r} is not a member of pairing {pairing!r}")
        return spec.subordinate if tls_party == spec.root else spec.root

    def _receipt(self, party: str, pairing: str, version: int, env: Envelope) -> bytes:
        receipt = receipt_for(
            party=party,
            pairing=pairing,
            version=version,
            payload=env.payload,
            accepted_at=self.clock(),
            server=self.name,
        )
        signed: bytes = sign_receipt(receipt, self.key).to_pb().SerializeToString()
        return signed

    def _reconcile(self, pairing: str) -> None:
        # The snapshot is committed already; a failing reconciliation must not undo the push.
        try:
            self.reports.make(pairing)
        except Exception:
            log.exception("reconciling pairing=%s failed", pairing)
