"""A pairing's report body, assembled in one place for the server and for each co-signing agent.

The server signs the body `build_report` returns; an agent co-signs a report only when its own
call, on the snapshots it verified itself, returns the very same bytes. Both sides used to
assemble the body their own way (which side sent nothing, which earlier snapshots show what
disappeared, the report it continues) and could drift apart without either being wrong: with one
assembly, two bodies can differ only because their inputs do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import Finding
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Side, Snapshot
from invsync.agent.reconcile.rules.stale_peer import never_sent
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    ReportBody,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
)
from invsync.agent.report.certificates import CertificateLookup, lookup_in


@dataclass(frozen=True)
class ReportSide:
    """One party of a pairing as its report compares it.

    `snapshot` is the party's latest snapshot, verified by the caller (the server when it accepted
    it, an agent when it fetched it), None while the party has sent none. `previous` is the
    party's snapshot before that one, None when there is none: what vanished since it is
    `disappeared`, so both callers must pass the same one.
    """

    party: str
    snapshot: Snapshot | None = None
    previous: Snapshot | None = None

    @classmethod
    def of(cls, snapshot: Snapshot, previous: Snapshot | None = None) -> ReportSide:
        """The side of the party that sent `snapshot`."""
        return cls(snapshot.header.party, snapshot, previous)

    def ref(self, role: str) -> SnapshotRef:
        """How the report names this side in `role`: its snapshot, or version 0 when absent."""
        if self.snapshot is None:
            return SnapshotRef.absent(self.party, role)
        return SnapshotRef.of(self.snapshot, role)


def build_report(
    *,
    pairing: str,
    as_of: datetime,
    root: ReportSide,
    subordinate: ReportSide,
    signers: Iterable[Signer],
    previous: ReportBody | None = None,
) -> bytes:
    """The canonical body of `pairing`'s report on `root` and `subordinate` at `as_of`.

    Both sides sent a snapshot: the findings are their reconciliation at `as_of` (stale snapshots
    and acknowledgements in force included). One side sent none: the one finding says so
    (`never_sent`). `previous` is the parsed report this one continues (first_seen, resolved).
    A pure function of its arguments; ValueError when neither side has a snapshot.
    """
    return build_report_body(
        pairing=pairing,
        as_of=as_of,
        root=root.ref(ROOT),
        subordinate=subordinate.ref(SUBORDINATE),
        findings=_findings(pairing, root, subordinate, as_of),
        signers=signers,
        previous=previous,
        certificates=_lookup(root, subordinate, previous),
    )


def _lookup(
    root: ReportSide, subordinate: ReportSide, previous: ReportBody | None
) -> CertificateLookup:
    """Facts from the snapshots compared, then the ones before them (a certificate that
    disappeared), then the previous report (a resolved finding's certificate that left both)."""
    snapshots = (root.snapshot, subordinate.snapshot, root.previous, subordinate.previous)
    groups = [s.records for s in snapshots if s is not None]
    return lookup_in(*groups, earlier=() if previous is None else previous.certificates)


def _findings(
    pairing: str, root: ReportSide, subordinate: ReportSide, as_of: datetime
) -> tuple[Finding, ...]:
    if root.snapshot is None and subordinate.snapshot is None:
        raise ValueError(f"pairing {pairing!r}: neither party has sent a snapshot to report on")
    if root.snapshot is None or subordinate.snapshot is None:
        silent = root if root.snapshot is None else subordinate
        return (never_sent(silent.party, pairing),)
    root_side = Side.of(root.snapshot, previous=root.previous)
    return reconcile(root_side, Side.of(subordinate.snapshot, previous=subordinate.previous), as_of)


def offline_report(
    findings: tuple[Finding, ...], as_of: datetime, certificates: CertificateLookup | None = None
) -> ReportBody:
    """The report-shaped view of an offline comparison (`invsync reconcile --format markdown`):
    no snapshots (version 0 on both sides), no signers, never signed or exchanged. It is built
    here, beside the exchanged report, so that both are rendered from one body layout;
    `certificates` (the records compared) list the facts of the certificates found."""
    body = build_report_body(
        pairing="offline",
        as_of=as_of,
        root=SnapshotRef("root", ROOT, 0, ""),
        subordinate=SnapshotRef("subordinate", SUBORDINATE, 0, ""),
        findings=findings,
        signers=[],
        certificates=certificates,
    )
    return parse_report_body(body)
