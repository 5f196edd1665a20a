"""Making a pairing's report once either party has an accepted snapshot.

The server decodes the snapshots it stored (their signatures were verified when accepted), hands
them to the one report builder the agents call too (`agent.report.build`), and signs the body.
The agents then rebuild it themselves before adding their signatures. A new report is
appended to the transparency log in the transaction that stores it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from invsync.agent.errors import ReportError
from invsync.agent.exchange.acceptance import AcceptancePolicy
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keyring import KeyRing
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.snapshot import decode_header, decode_payload
from invsync.agent.gc_pause import collector_paused
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Snapshot
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    Signer,
    parse_report_body,
    report_id,
)
from invsync.agent.report.build import ReportSide, build_report
from invsync.server import metrics
from invsync.server.snapshot_sets import whole_set
from invsync.server.storage import ExchangeStorage, LogWriter, log_entry
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.server")

# What _save answers when the keys in force changed while the report was built; make() builds
# again, a few times at most (each time a rotation committed in between).
STALE_SIGNERS = "stale signers"
MAX_REBUILDS = 5


class ReportMaker:
    def __init__(
        self,
        *,
        server_name: str,
        store: ExchangeStorage,
        policy: AcceptancePolicy,
        signing_key: SigningKey,
        as_of: datetime | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.policy = policy
        self.key = signing_key
        self.as_of = as_of
        self.clock = clock
        self.log = LogWriter(server_name, signing_key)
        # One report at a time: each continues the pairing's latest (first_seen, resolved), so
        # two made at once from one latest would both claim it (the worker and the schedule
        # both make reports).
        self._making = threading.Lock()
        # Decoded snapshots by payload digest, least recently used first: the current and the
        # previous of each party of each pairing, and the one pushed next.
        self._decoded: dict[str, Snapshot] = {}
        self._keep = _kept(policy)
        # The exchange hands in what it accepted from its own threads, while a report is made.
        self._remembering = threading.Lock()
        # Called once a new report is committed (server.report_news wakes who waits for one).
        self.on_saved: Callable[[], None] = lambda: None

    def set_policy(self, policy: AcceptancePolicy) -> None:
        """A reloaded configuration's (server.live_config), once the report under way is made:
        a report reads the policy at several steps, and a pairing or party removed between two
        of them would fail it half-way."""
        with self._making:
            self.policy = policy
            self._keep = _kept(policy)

    def make(self, pairing: str) -> str | None:
        """`_make` under the one-report-at-a-time lock."""
        with self._making:
            return self._made(pairing)

    def make_if_stale(self, pairing: str) -> str | None:
        """`make`, unless the latest report already compares the parties' latest snapshots: what
        a push asks for. Two pushes close together ask twice, and the report made on the first
        request can already be on both new snapshots; a second one would differ only in its
        clock, and a party that co-signed the first would be left to sign it alone."""
        with self._making:
            return self._made(pairing) if self.stale(pairing) else None

    def _made(self, pairing: str) -> str | None:
        if pairing not in self.policy.pairings:
            # Asked for before a reload removed the pairing: its reports stay as they are.
            log.info("no report for pairing=%s: it is no longer configured", pairing)
            return None
        for _ in range(MAX_REBUILDS):
            made = self._make(pairing)
            if made is not STALE_SIGNERS:
                return made
        raise ReportError(f"pairing {pairing}: the signers kept changing while reconciling")

    def stale(self, pairing: str) -> bool:
        """Whether the pairing's latest report does not compare its parties' latest snapshots
        (or there is none yet while one side has pushed): what a start must reconcile, and the
        only case in which a push gets a report (`make_if_stale`). A pairing a reload removed
        has nothing accepted (`_latest_accepted`), so nothing more to report."""
        latest = self._latest_accepted(pairing)
        if all(last == (0, "") for last in latest.values()):
            return False
        previous = self._latest(pairing)
        return previous is None or not _compares(previous, latest)

    def compares_latest(self, pairing: str, body: ReportBody) -> bool:
        """Whether `body` compares each party's latest accepted snapshot of the pairing (or
        names it absent while it has sent none): a waiting call asks it of the body it has
        parsed already (server.report_news)."""
        if pairing not in self.policy.pairings:
            return False  # removed by a reload while the call waited
        return _compares(body, self._latest_accepted(pairing))

    def _latest_accepted(self, pairing: str) -> dict[str, tuple[int, str]]:
        """Each party's latest accepted snapshot of the pairing as a report names it: version
        and payload SHA-256, (0, "") while it has sent none."""
        spec = self.policy.pairings.get(pairing)
        if spec is None:  # removed by a reload: nothing accepted to compare
            return {}
        latest = {}
        for party in (spec.root, spec.subordinate):
            last = self.store.last_accepted(party, pairing)
            latest[party] = (last.version, last.payload_sha256) if last else (0, "")
        return latest

    def _make(self, pairing: str) -> str | None:
        """Reconcile and store a signed report; its id, or None while neither side has pushed.

        While one side has pushed and the other has not, the report compares nothing and says
        so in its one finding (`never_sent`), so the silence shows on the schedule too.
        """
        with collector_paused():  # both sides' records, decoded and compared: agent.gc_pause
            return self._reconciled(pairing)

    def _reconciled(self, pairing: str) -> str | None:
        spec = self.policy.pairings[pairing]
        root, sub = self._side(spec.root, pairing), self._side(spec.subordinate, pairing)
        if root.snapshot is None and sub.snapshot is None:
            return None
        as_of = self.as_of or self.clock()
        previous = self._latest(pairing)
        unchanged = _same_report(previous, root, sub, as_of)
        if unchanged is not None:
            return unchanged
        signers = self.signers(pairing, spec.root, spec.subordinate)
        body = build_report(
            pairing=pairing,
            as_of=as_of,
            root=root,
            subordinate=sub,
            signers=signers,
            previous=previous,
        )
        return self._save(pairing, body, signers)

    def _save(self, pairing: str, body: bytes, signers: list[Signer]) -> str:
        """Sign and store the body; its findings become the pairing's open-findings gauge.
        STALE_SIGNERS, storing nothing, when a party's key rotated since the body was built: a
        push commits while a report is made (server.report_worker), and a report must list the
        keys in force where it stands in the log (the evidence verifier's check 10)."""
        rid = report_id(body)
        sig = Sig(self.key.public.keyid, self.key.sign(pae(REPORT_PAYLOAD_TYPE, body)))
        spec = self.policy.pairings[pairing]
        with self.store.transaction():
            if self.signers(pairing, spec.root, spec.subordinate) != signers:
                return STALE_SIGNERS
            if self.store.save_report(rid, pairing, body, sig):
                env = Envelope(REPORT_PAYLOAD_TYPE, body, (sig,))
                entry = log_entry(pb.LOG_ENTRY_KIND_REPORT, env, pairing=pairing, report_id=rid)
                self.log.append(self.store, entry)
        self.on_saved()
        metrics.OPEN_FINDINGS.set(pairing, parse_report_body(body).findings)
        return rid

    def _side(self, party: str, pairing: str) -> ReportSide:
        """The party's latest accepted snapshot and the one before it, or the party alone."""
        latest = self._latest_snapshot(party, pairing)
        return (
            ReportSide(party) if latest is None else ReportSide.of(latest, self._previous(latest))
        )

    def _latest_snapshot(self, party: str, pairing: str) -> Snapshot | None:
        env = self.store.snapshot(party, pairing)
        return None if env is None else self._decode(env.payload, party, pairing)

    def remember(self, snapshot: Snapshot) -> None:
        """A snapshot the exchange just accepted, decoded there: its report need not decode it
        again."""
        with self._remembering:
            self._remember(snapshot)

    def _decode(self, payload: bytes, party: str, pairing: str) -> Snapshot:
        """The snapshot of stored bytes, decoded once for as long as it is among the last ones
        used: each report compares every party's current and previous snapshot, so in a steady
        cycle all but the newly pushed one were decoded for the report before."""
        digest = hashlib.sha256(payload).hexdigest()
        with self._remembering:
            snapshot = self._decoded.pop(digest, None)
        if snapshot is None:
            header = decode_header(payload)
            # A full snapshot is its own whole set: only a delta's is looked up (or rebuilt).
            held = whole_set(self.store, party, pairing, header.version) if header.delta else None
            snapshot = decode_payload(payload, full=held or b"")
        with self._remembering:
            self._remember(snapshot)
        return snapshot

    def _remember(self, snapshot: Snapshot) -> None:
        self._decoded.pop(snapshot.payload_sha256, None)
        # Without its whole set's bytes, which reports never read: six kept snapshots of
        # 100,000 records held 60 MB of them each.
        kept = replace(snapshot, full=b"") if snapshot.full else snapshot
        self._decoded[snapshot.payload_sha256] = kept  # the most recently used last
        while len(self._decoded) > self._keep:
            self._decoded.pop(next(iter(self._decoded)))

    def _latest(self, pairing: str) -> ReportBody | None:
        """The pairing's latest report, which the next one continues (first_seen, resolved).

        A stored body this version cannot read (an older format) starts a new history rather
        than stopping reports; the new body then says `previous_report: null`.
        """
        stored = self.store.report(pairing)
        if stored is None:
            return None
        try:
            return parse_report_body(stored.envelope.payload)
        except ReportError:
            return None

    def _previous(self, snapshot: Snapshot) -> Snapshot | None:
        """The party's snapshot before this one: what vanished since is `disappeared`."""
        header = snapshot.header
        if header.version <= 1:
            return None
        env = self.store.snapshot(header.party, header.pairing, header.version - 1)
        return None if env is None else self._decode(env.payload, header.party, header.pairing)

    def signers(self, pairing: str, root: str, subordinate: str) -> list[Signer]:
        """Every key whose signature the report expects: the server's, then each party's."""
        server = [
            Signer("server", self.server_name, self.key.public.keyid, self.key.public.spki_der)
        ]
        return (
            server
            + self._party_signers(pairing, ROOT, root)
            + self._party_signers(pairing, SUBORDINATE, subordinate)
        )

    def _party_signers(self, pairing: str, role: str, party: str) -> list[Signer]:
        """The party's keys in force for the pairing: pinned, or the one it rotated to."""
        keys = party_keyring(self.policy, self.store, party).keys_for(pairing)
        return [Signer(role, party, keyid, keys[keyid].spki_der) for keyid in sorted(keys)]


def _kept(policy: AcceptancePolicy) -> int:
    """How many decoded snapshots to keep: see ReportMaker.__init__."""
    return 4 * len(policy.pairings) + 2


def party_keyring(policy: AcceptancePolicy, store: ExchangeStorage, party: str) -> KeyRing:
    """The party's pinned keys and the rotations it announced so far."""
    return KeyRing(party, policy.parties[party].keys, tuple(store.rotations(party)))


def _same_report(
    previous: ReportBody | None, root: ReportSide, sub: ReportSide, as_of: datetime
) -> str | None:
    """The previous report's id when it compared the same snapshots at the same clock."""
    if previous is None:
        return None
    now = (root.ref(ROOT), sub.ref(SUBORDINATE), as_of)
    return (
        previous.report_id if (previous.root, previous.subordinate, previous.as_of) == now else None
    )


def _compares(body: ReportBody, latest: dict[str, tuple[int, str]]) -> bool:
    """Whether `body` names each party's snapshot as `latest` has it."""
    named = {ref.party: (ref.version, ref.digest) for ref in (body.root, body.subordinate)}
    return all(named.get(party) == last for party, last in latest.items())
