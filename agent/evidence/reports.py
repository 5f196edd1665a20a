"""Check 10: every report is the one `build_report` makes from the snapshots it names, and every
co-signature is on a report of the log.

A report is rebuilt exactly as the server built it (server/reconciling.py): each side is the
snapshot the body names (party, version, digest), found in the log before the report, with the
party's version before it as `previous` (for `disappeared`); the previous report is the
pairing's last report before it in the log; the clock is the body's `as_of`; the signers are the
body's, each of which must be a key in force there (the server's pinned key; each party's key
in force for the pairing). The rebuilt bytes must equal the signed body, byte for byte. A
co-signature must sign exactly the body of a report of its pairing logged before it, by one of
that report's two parties (its key was checked in force by check 7).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from invsync.agent.errors import ReportError
from invsync.agent.evidence.entries import K, LoggedEntry
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.evidence.trust import Trust
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import ReportBody, SnapshotRef, parse_report_body, report_id
from invsync.agent.report.build import ReportSide, build_report
from invsync.agent.report.diff import diff_findings

CHECK = "report"


class _Reports:
    """The reports met so far in log order: by id, and each pairing's latest."""

    def __init__(
        self,
        snapshots: Mapping[int, Snapshot],
        trust: Trust,
        resets: Mapping[int, ChainReset] | None = None,
    ) -> None:
        self.trust = trust
        self.resets = resets or {}
        # A version may be in the log twice when a chain reset set the first one aside: a report
        # names the one logged last before it.
        self.by_version: dict[tuple[str, str, int], list[tuple[int, Snapshot]]] = {}
        for i in sorted(snapshots):
            s = snapshots[i]
            key = (s.header.party, s.header.pairing, s.header.version)
            self.by_version.setdefault(key, []).append((i, s))
        self.bodies: dict[int, ReportBody] = {}
        self.by_id: dict[str, tuple[int, bytes, ReportBody]] = {}
        self.latest: dict[str, ReportBody] = {}

    def logged_before(self, index: int, party: str, pairing: str, version: int) -> Snapshot | None:
        """The party's snapshot `version` logged last before entry `index` and not set aside
        by a chain reset between the two; None if none."""
        found = [
            s
            for i, s in self.by_version.get((party, pairing, version), [])
            if i < index and not self._set_aside(i, index, party, pairing, version)
        ]
        return found[-1] if found else None

    def _set_aside(self, logged: int, index: int, party: str, pairing: str, version: int) -> bool:
        return any(
            logged < at < index
            and (r.party, r.pairing) == (party, pairing)
            and version in r.superseded
            for at, r in self.resets.items()
        )


def check_reports(
    entries: Sequence[LoggedEntry],
    snapshots: Mapping[int, Snapshot],
    trust: Trust,
    resets: Mapping[int, ChainReset] | None = None,
) -> dict[int, ReportBody]:
    """Check 10; every parsed report body by its entry index. A report after a chain reset
    must not name a snapshot the reset set aside."""
    reports = _Reports(snapshots, trust, resets)
    for item in entries:
        if item.kind == K.LOG_ENTRY_KIND_REPORT:
            body = _report(item, reports)
            reports.bodies[item.index] = body
            reports.by_id[body.report_id] = (item.index, item.envelope.payload, body)
            reports.latest[body.pairing] = body
        elif item.kind == K.LOG_ENTRY_KIND_REPORT_SIGNATURE:
            _cosignature(item, reports)
    return reports.bodies


def _report(item: LoggedEntry, reports: _Reports) -> ReportBody:
    where = entry(item.index)
    payload = item.envelope.payload
    if report_id(payload) != item.report_id:
        raise CheckFailed(
            CHECK,
            where,
            f"the entry names report {item.report_id}, its body is {report_id(payload)}",
        )
    try:
        body = parse_report_body(payload)
    except ReportError as e:
        raise CheckFailed(CHECK, where, str(e)) from e
    if body.pairing != item.pairing:
        raise CheckFailed(
            CHECK, where, f"the entry's pairing is {item.pairing}, the body's {body.pairing}"
        )
    _check_signers(item, body, reports.trust)
    try:
        rebuilt = build_report(
            pairing=body.pairing,
            as_of=body.as_of,
            root=_side(item, body.root, reports),
            subordinate=_side(item, body.subordinate, reports),
            signers=body.signers,
            previous=reports.latest.get(body.pairing),
        )
    except ValueError as e:  # neither side named a snapshot
        raise CheckFailed(CHECK, where, f"the report cannot be rebuilt: {e}") from e
    if rebuilt != payload:
        raise CheckFailed(CHECK, where, _mismatch(body, rebuilt, payload))
    return body


def _check_signers(item: LoggedEntry, body: ReportBody, trust: Trust) -> None:
    """Every listed signer is a key in force for its role there; each role has one."""
    where = entry(item.index)
    server = trust.server_ids(CHECK, where, at=item.index)
    parties = {"root": body.root.party, "subordinate": body.subordinate.party}
    for role in ("server", "root", "subordinate"):
        listed = [s for s in body.signers if s.role == role]
        name = trust.server if role == "server" else parties[role]
        if not listed:
            raise CheckFailed(CHECK, where, f"the report lists no {role} signer")
        ring = None if role == "server" else trust.ring(name, CHECK, where, before=item.index)
        in_force = server if ring is None else ring.keys_for(body.pairing)
        for signer in listed:
            if signer.name != name or signer.keyid not in in_force:
                raise CheckFailed(
                    CHECK,
                    where,
                    f"the report lists key {signer.keyid[:16]} of {signer.name} as {role} signer, "
                    f"which is not a key in force for {name} there",
                )


def _side(item: LoggedEntry, ref: SnapshotRef, reports: _Reports) -> ReportSide:
    """The side the report compares in `ref`'s role: the named snapshot and the one before."""
    if ref.version == 0 and not ref.digest:
        return ReportSide(ref.party)
    found = reports.logged_before(item.index, ref.party, item.pairing, ref.version)
    if found is None or found.payload_sha256 != ref.digest:
        raise CheckFailed(
            CHECK,
            entry(item.index),
            f"the report names the {ref.role} snapshot of {ref.party} version {ref.version} "
            f"({ref.digest[:16] or 'no digest'}), which is not in the log before it",
        )
    previous = reports.logged_before(item.index, ref.party, item.pairing, ref.version - 1)
    return ReportSide.of(found, previous)


def _mismatch(body: ReportBody, rebuilt: bytes, payload: bytes) -> str:
    """What differs between the signed body and the rebuilt one, for a person."""
    ours, theirs = json.loads(rebuilt), json.loads(payload)
    fields = ", ".join(k for k in sorted(ours) if ours.get(k) != theirs.get(k))
    diff = diff_findings(parse_report_body(rebuilt).findings, body.findings)
    changes = [f"+{f.code} {f.sha256[:16]}" for f in diff.new]
    changes += [f"-{f.code} {f.sha256[:16]}" for f in diff.resolved]
    changes += [f"~{new.code} {new.sha256[:16]}" for _, new in diff.changed]
    shown = f"; findings against the rebuilt ones: {', '.join(changes)}" if changes else ""
    return (
        f"the signed body is not the one rebuilt from the snapshots it names (root "
        f"{body.root.party} v{body.root.version}, subordinate {body.subordinate.party} "
        f"v{body.subordinate.version}); fields that differ: {fields or 'none'}{shown}"
    )


def _cosignature(item: LoggedEntry, reports: _Reports) -> None:
    where = entry(item.index)
    found = reports.by_id.get(item.report_id)
    if found is None or found[2].pairing != item.pairing:
        raise CheckFailed(
            CHECK, where, f"co-signs report {item.report_id[:16]}, not in the log before it"
        )
    _, payload, body = found
    if item.envelope.payload != payload:
        raise CheckFailed(CHECK, where, f"co-signs other bytes than report {item.report_id[:16]}")
    if item.party not in (body.root.party, body.subordinate.party):
        raise CheckFailed(
            CHECK, where, f"{item.party} is not a party of report {item.report_id[:16]}"
        )
