"""An incident's timeline, every row with the evidence it rests on.

From the report files alone: each certificate's issuance and its doppelganger siblings' (the
report lists them, since the findings name them), each report of the pairing that listed one of
the incident's findings or found it resolved, when invsync first saw each, the acknowledgements
and the due dates. From an agent's database besides (`incident_history`): the first snapshot of
each party that held each certificate, and the first that recorded it revoked. Evidence is a
report id or a snapshot's party, version and payload SHA-256; never a local path, and never the
time a source was imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from invsync.agent.model.findings import Finding
from invsync.agent.model.record import Revocation
from invsync.agent.report.body import ReportBody, SnapshotRef
from invsync.agent.report.certificates import ListedCertificate
from invsync.agent.report.diff import FindingKey, finding_key
from invsync.agent.report.incident_history import Sighting, SnapshotMark
from invsync.agent.report.incident_names import readable_name, short
from invsync.agent.times import rfc3339

REPORT_ID_SHOWN = 12
_END = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    at: datetime
    event: str
    evidence: str


def timeline(
    chosen: Sequence[Finding],
    reports: Sequence[ReportBody],
    listed: Mapping[str, ListedCertificate],
    seen: Sequence[Sighting] = (),
) -> list[Row]:
    """The rows in time order. `reports` are the pairing's reports up to the current one (the
    last), oldest first."""
    current = reports[-1]
    keys = {finding_key(f) for f in chosen}
    rows = [*_issuance(chosen, listed, current), *_reports(keys, reports)]
    rows += [*_first_seen(chosen, reports), *_acknowledged(chosen, current), *_due(chosen, current)]
    rows += _held(seen) + [_revoked(s, s.revoked) for s in seen if s.revoked is not None]
    return sorted(rows, key=lambda row: (row.at, row.event))


def report_ref(body: ReportBody) -> str:
    return f"report {body.report_id[:REPORT_ID_SHOWN]} (as of {rfc3339(body.as_of)})"


def snapshot_ref(mark: SnapshotMark) -> str:
    return f"{mark.party} snapshot v{mark.version} sha256:{mark.digest}"


def _issuance(
    chosen: Sequence[Finding], listed: Mapping[str, ListedCertificate], current: ReportBody
) -> list[Row]:
    affected = sorted({f.sha256 for f in chosen if f.sha256})
    siblings = {r: f.sha256 for f in chosen for r in f.related if r not in affected}
    evidence = f"the certificate, listed in {report_ref(current)}"
    rows = [_issued(listed[sha], "", evidence) for sha in affected if sha in listed]
    rows += [
        _issued(listed[sha], f"doppelganger of {short(of)}: ", evidence)
        for sha, of in sorted(siblings.items())
        if sha in listed
    ]
    return rows


def _issued(cert: ListedCertificate, prefix: str, evidence: str) -> Row:
    what = f"{prefix}{readable_name(cert.subject)} ({short(cert.sha256)}) issued (notBefore)"
    return Row(cert.not_before, what, evidence)


def _reports(keys: set[FindingKey], reports: Sequence[ReportBody]) -> list[Row]:
    rows = []
    for body in reports:
        listed = [f for f in body.findings if finding_key(f) in keys]
        if listed:
            rows.append(Row(body.as_of, f"invsync report lists {_named(listed)}", _cites(body)))
        resolved = [r.finding for r in body.resolved if finding_key(r.finding) in keys]
        if resolved:
            what = f"invsync report finds resolved: {_named(resolved)}"
            rows.append(Row(body.as_of, what, _cites(body)))
    return rows


def _cites(body: ReportBody) -> str:
    return f"{report_ref(body)}, comparing {_compared(body.root)} and {_compared(body.subordinate)}"


def _compared(ref: SnapshotRef) -> str:
    return f"{ref.party} snapshot v{ref.version} sha256:{ref.digest}"


def _first_seen(chosen: Sequence[Finding], reports: Sequence[ReportBody]) -> list[Row]:
    """Findings invsync saw before the earliest report here that lists them (the older reports
    are elsewhere): the first_seen the current report carries forward."""
    shown = {finding_key(f): body.as_of for body in reversed(reports) for f in body.findings}
    earlier = [f for f in chosen if f.first_seen and f.first_seen < shown.get(finding_key(f), _END)]
    times = sorted({f.first_seen for f in earlier if f.first_seen})
    evidence = f"first_seen in {report_ref(reports[-1])}"
    return [
        Row(
            at,
            f"invsync first reports {_named(f for f in earlier if f.first_seen == at)}",
            evidence,
        )
        for at in times
    ]


def _acknowledged(chosen: Sequence[Finding], current: ReportBody) -> list[Row]:
    rows = []
    for f in chosen:
        if f.acknowledgement is not None:
            ack = f.acknowledgement
            what = (
                f"{ack.party} acknowledges {f.code} on {short(f.sha256)} until "
                f"{rfc3339(ack.expires_at)}: {ack.reason}"
            )
            rows.append(Row(ack.acknowledged_at, what, report_ref(current)))
    return rows


def _due(chosen: Sequence[Finding], current: ReportBody) -> list[Row]:
    due = sorted({(f.due, f.code, f.policy) for f in chosen if f.due is not None})
    return [
        Row(
            at,
            f"due: {code} on {_shas(f for f in chosen if (f.due, f.code) == (at, code))}"
            + (f" under {policy}" if policy else ""),
            report_ref(current),
        )
        for at, code, policy in due
    ]


def _held(seen: Sequence[Sighting]) -> list[Row]:
    """One row per snapshot that first held some of the certificates."""
    marks = sorted({s.mark for s in seen if s.revoked is None}, key=lambda m: (m.party, m.version))
    rows = []
    for mark in marks:
        shas = ", ".join(sorted(short(s.sha256) for s in seen if s.mark == mark and not s.revoked))
        what = f"first in {mark.party}'s signed inventory: {shas}"
        rows.append(Row(mark.issued_at, what, snapshot_ref(mark)))
    return rows


def _revoked(seen: Sighting, revocation: Revocation) -> Row:
    reason = f" ({revocation.reason})" if revocation.reason else ""
    what = f"{short(seen.sha256)} revoked{reason}, as {seen.mark.party}'s snapshot records it"
    return Row(revocation.revoked_at, what, snapshot_ref(seen.mark))


def _named(findings: Iterable[Finding]) -> str:
    """`code` on short SHA-256s, per code: "missing-at-subordinate on 21C0…, 659B…"."""
    items = list(findings)
    codes = sorted({f.code for f in items})
    return "; ".join(f"{code} on {_shas(f for f in items if f.code == code)}" for code in codes)


def _shas(findings: Iterable[Finding]) -> str:
    return ", ".join(sorted({short(f.sha256) for f in findings if f.sha256}))
