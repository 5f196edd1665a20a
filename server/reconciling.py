"""Making a pairing's report once both parties have an accepted snapshot.

The server decodes the snapshots it stored (their signatures were verified when accepted),
runs the same pure reconciler the agents run, and signs the deterministic report body. The
agents then recompute it themselves before adding their signatures.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from invsync.agent.errors import ReportError
from invsync.agent.exchange.acceptance import AcceptancePolicy
from invsync.agent.exchange.envelope import Sig, pae
from invsync.agent.exchange.keyring import KeyRing
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.snapshot import decode_payload
from invsync.agent.model.findings import Finding
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Side, Snapshot
from invsync.agent.reconcile.rules.stale_peer import never_sent
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
    report_id,
)
from invsync.server import metrics
from invsync.server.store import ServerStore


class ReportMaker:
    def __init__(
        self,
        *,
        server_name: str,
        store: ServerStore,
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

    def make(self, pairing: str) -> str | None:
        """Reconcile and store a signed report; its id, or None while neither side has pushed.

        While one side has pushed and the other has not, the report compares nothing and says
        so in its one finding (`never_sent`), so the silence shows on the schedule too.
        """
        spec = self.policy.pairings[pairing]
        root = self._latest_snapshot(spec.root, pairing)
        sub = self._latest_snapshot(spec.subordinate, pairing)
        if root is None and sub is None:
            return None
        as_of = self.as_of or self.clock()
        root_ref = _ref(root, spec.root, ROOT)
        sub_ref = _ref(sub, spec.subordinate, SUBORDINATE)
        previous = self._latest(pairing)
        if previous is not None and (previous.root, previous.subordinate, previous.as_of) == (
            root_ref,
            sub_ref,
            as_of,
        ):
            return previous.report_id  # the same snapshots at the same clock: nothing new
        if root is None or sub is None:
            findings: tuple[Finding, ...] = (
                never_sent(spec.root if root is None else spec.subordinate, pairing),
            )
        else:
            root_side = Side.of(root, previous=self._previous(root))
            findings = reconcile(root_side, Side.of(sub, previous=self._previous(sub)), as_of)
        body = build_report_body(
            pairing=pairing,
            as_of=as_of,
            root=root_ref,
            subordinate=sub_ref,
            findings=findings,
            signers=self.signers(pairing, spec.root, spec.subordinate),
            previous=previous,
        )
        rid = report_id(body)
        sig = Sig(self.key.public.keyid, self.key.sign(pae(REPORT_PAYLOAD_TYPE, body)))
        self.store.save_report(rid, pairing, body, sig)
        metrics.OPEN_FINDINGS.set(pairing, findings)
        return rid

    def _latest_snapshot(self, party: str, pairing: str) -> Snapshot | None:
        env = self.store.snapshot(party, pairing)
        return None if env is None else decode_payload(env.payload)

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
        return None if env is None else decode_payload(env.payload)

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


def party_keyring(policy: AcceptancePolicy, store: ServerStore, party: str) -> KeyRing:
    """The party's pinned keys and the rotations it announced so far."""
    return KeyRing(party, policy.parties[party].keys, tuple(store.rotations(party)))


def _ref(snapshot: Snapshot | None, party: str, role: str) -> SnapshotRef:
    """The compared snapshot, or the side of a party that has sent none."""
    return SnapshotRef.absent(party, role) if snapshot is None else SnapshotRef.of(snapshot, role)
