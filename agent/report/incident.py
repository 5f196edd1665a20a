"""A draft incident report in the CCADB layout (ccadb.org/cas/incident-report, "Full Incident
Report"): one draft for several findings of a report, as a CA files one matter.

invsync fills in what the signed data says: in the Summary, every affected certificate and
every failure (`incident_failures`) with its policy and what to do; the Impact's counts; the
Timeline with the evidence each row rests on (`incident_timeline`); the Appendix, one row per
certificate in the CCADB field order, from the report's `certificates` alone. What only people
can write (the CCADB id, root causes, lessons, action items' kinds and criteria) is left with a
prompt. Every value that comes from a certificate or a report is escaped for Markdown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.model.findings import (
    MISSING_AT_SUBORDINATE,
    NOT_IN_AUDIT_SCOPE,
    UNUSED_NOT_REVOKED,
    Finding,
)
from invsync.agent.report.body import ReportBody
from invsync.agent.report.certificates import ListedCertificate
from invsync.agent.report.incident_failures import (
    OUTSIDE_AUDIT,
    UNREVOKED,
    UNTRACKED,
    Failure,
    contributing,
    failures,
)
from invsync.agent.report.incident_history import Sighting
from invsync.agent.report.incident_names import readable_name, short
from invsync.agent.report.incident_timeline import report_ref, snapshot_ref, timeline
from invsync.agent.report.render.names import readable_dn
from invsync.agent.report.render.text import markdown_text as md
from invsync.agent.times import rfc3339

TO_WRITE = "_To be written by the CA._"
CRT_SH = "https://crt.sh/?sha256="


@dataclass(frozen=True)
class Incident:
    """What a draft is made of: the chosen findings of the current report (the last of
    `reports`, the pairing's reports oldest first) and what the snapshots say (`seen`)."""

    chosen: tuple[Finding, ...]
    reports: tuple[ReportBody, ...]
    seen: tuple[Sighting, ...] = ()
    # Whether the reports' signatures were checked against pinned keys, in words.
    signatures: str = ""

    @property
    def body(self) -> ReportBody:
        return self.reports[-1]

    @property
    def listed(self) -> Mapping[str, ListedCertificate]:
        return {c.sha256: c for c in self.body.certificates}

    @property
    def affected(self) -> list[str]:
        return sorted({f.sha256 for f in self.chosen if f.sha256})

    @property
    def siblings(self) -> dict[str, str]:
        """Doppelganger siblings the findings name, each with the affected certificate it is
        a sibling of."""
        return {r: f.sha256 for f in self.chosen for r in f.related if r not in self.affected}

    def revoked(self, sha: str) -> Sighting | None:
        return next((s for s in self.seen if s.sha256 == sha and s.revoked), None)


def incident_draft(incident: Incident) -> str:
    """The draft, Markdown."""
    found = failures(incident.chosen, incident.listed)
    sections = [
        _title(incident, found),
        "## Full Incident Report",
        _summary(incident, found),
        _impact(incident),
        _timeline(incident),
        "### Related Incidents\n\n| Bug | Date | Description |\n|---|---|---|\n| "
        + TO_WRITE
        + " | | |",
        _root_causes(incident, found),
        "### Lessons Learned\n\n"
        + "\n".join(
            f"- **{what}:** {TO_WRITE}"
            for what in (
                "What went well",
                "What didn't go well",
                "Where we got lucky",
                "Additional",
            )
        ),
        _actions(found),
        _appendix(incident),
    ]
    return "\n\n".join(sections) + "\n"


def _title(incident: Incident, found: list[Failure]) -> str:
    body = incident.body
    return (
        f"# Incident report (draft): {md(body.pairing)}, {len(incident.affected)} "
        f"certificate(s), {len(found)} failure(s)\n\n"
        f"_Drafted by invsync from {report_ref(body)}. Replace every "
        f'"{TO_WRITE.strip("_")}" before filing._'
        + (f"\n\n_{md(incident.signatures)}_" if incident.signatures else "")
    )


# --- Summary -----------------------------------------------------------------------------------


def _summary(incident: Incident, found: list[Failure]) -> str:
    lines = [
        "### Summary",
        "",
        f"- **CA Owner CCADB unique ID:** {TO_WRITE}",
        f"- **Incident description:** {_description(incident, found)}",
        "",
        "  Certificates:",
        "",
        *(f"  - {_named(incident, sha)}" for sha in incident.affected),
        "",
        "  Failures:",
        "",
        *(f"  {n}. {_failure(incident, f)}" for n, f in enumerate(found, start=1)),
        *_contributing(incident),
        "",
        "- **Timeline summary:**",
        f"   - **Non-compliance start date:** {_start(incident)}",
        f"   - **Non-compliance identified date:** {_identified(incident)}",
        f"   - **Non-compliance end date:** {_end(incident)}",
        f"- **Relevant policies:** {_policies(incident, found)}",
        "- **Source of incident disclosure:** "
        f"{TO_WRITE} (Self Reported, Third Party Reported or Audit)",
    ]
    return "\n".join(lines)


def _description(incident: Incident, found: list[Failure]) -> str:
    titles = ", ".join(md(f.title) for f in found) or "no error-severity failure"
    return (
        f"{len(incident.affected)} CA certificate(s) of the pairing {md(incident.body.pairing)} "
        f"({md(incident.body.root.party)} root, {md(incident.body.subordinate.party)} "
        f"subordinate), {len(found)} failure(s): {titles}."
    )


def _named(incident: Incident, sha: str) -> str:
    listed = incident.listed.get(sha)
    subject = listed.subject if listed else _subject_of(incident, sha)
    return f"{md(readable_name(subject))} (`{short(sha)}`)"


def _subject_of(incident: Incident, sha: str) -> str:
    return next((f.subject for f in incident.chosen if f.sha256 == sha), "")


def _failure(incident: Incident, failure: Failure) -> str:
    codes = _codes(failure)
    certs = ", ".join(_certificate(incident, failure, sha) for sha in failure.certificates)
    policy = f"Policy: {md(failure.policy)}. " if failure.policy else ""
    return (
        f"**{md(failure.title.capitalize())}** ({codes}): {_sentence(incident, failure)} "
        f"{certs}. {policy}What to do: {md(failure.action)}"
    )


def _codes(failure: Failure) -> str:
    """The codes of the findings a failure rests on (not its own, for a derived one)."""
    return ", ".join(f"`{code}`" for code in sorted({f.code for f in failure.findings}))


def _certificate(incident: Incident, failure: Failure, sha: str) -> str:
    since, as_of = failure.since.get(sha), incident.body.as_of
    if since is None:
        return _named(incident, sha)
    span = f"{_days(since, as_of)} days, {since.date()} to {as_of.date()}"
    return f"{_named(incident, sha)} for {span}"


def _sentence(incident: Incident, failure: Failure) -> str:
    body, count = incident.body, len(failure.certificates)
    party = md(failure.findings[0].party)
    if failure.title == UNTRACKED:
        return (
            f"{md(body.root.party)} issued {count} CA certificate(s) to {party} that {party}'s "
            "inventory does not list:"
        )
    if failure.title == OUTSIDE_AUDIT:
        return (
            f"{count} live CA certificate(s), not technically constrained, are absent from the "
            f"audit scope {party} declared:"
        )
    if failure.title == UNREVOKED:
        return (
            f"{count} CA certificate(s) {_unused(failure, party)} stayed valid and unrevoked "
            f"as of the report, {incident.body.as_of.date()}:"
        )
    return f"{md(failure.findings[0].message)} ({count} certificate(s)):"


def _unused(failure: Failure, party: str) -> str:
    codes = {f.code for f in failure.findings}
    return f"that {party} does not list" if MISSING_AT_SUBORDINATE in codes else "marked unused"


def _days(start: datetime, end: datetime) -> int:
    return (end.date() - start.date()).days


def _contributing(incident: Incident) -> list[str]:
    others = contributing(incident.chosen)
    if not others:
        return []
    return [
        "",
        "  Contributing findings:",
        "",
        *(
            f"  - `{f.code}` ({f.severity}) on {_named(incident, f.sha256)}: {md(f.message)}"
            for f in others
        ),
    ]


def _start(incident: Incident) -> str:
    dates = [(incident.listed[s].not_before, s) for s in incident.affected if s in incident.listed]
    if not dates:
        return TO_WRITE
    at, sha = min(dates)
    return f"{rfc3339(at)} (notBefore of {short(sha)})"


def _identified(incident: Incident) -> str:
    seen = [f.first_seen for f in incident.chosen if f.first_seen is not None]
    at = min(seen) if seen else incident.body.as_of
    return f"{rfc3339(at)} (first invsync report of these findings)"


def _end(incident: Incident) -> str:
    revoked = [incident.revoked(sha) for sha in incident.affected]
    if revoked and all(s is not None and s.revoked for s in revoked):
        last = max(s.revoked.revoked_at for s in revoked if s is not None and s.revoked)
        return f"{rfc3339(last)} (the last revocation)"
    return f"not ended as of {rfc3339(incident.body.as_of)} (the report's as of)"


def _policies(incident: Incident, found: list[Failure]) -> str:
    named = {f.policy for f in incident.chosen} | {f.policy for f in found}
    return "; ".join(md(p) for p in sorted(named) if p) or "N/A"


# --- Impact ------------------------------------------------------------------------------------


def _impact(incident: Incident) -> str:
    siblings = incident.siblings
    extra = (
        f"{len(siblings)} doppelganger sibling(s) share subject and key with the affected "
        "certificates (in the Appendix, marked): whoever holds the key can use any of them."
        if siblings
        else TO_WRITE
    )
    lines = [
        "### Impact",
        "",
        f"- **Total number of certificates:** {len(incident.affected)}",
        '- **Total number of "remaining valid" certificates:** '
        f"{_remaining(incident)} as of {rfc3339(incident.body.as_of)}",
        f"- **Affected certificate types:** subordinate CA certificates; {TO_WRITE}",
        "- **Incident heuristic:** (3) the full corpus of affected certificates is disclosed in "
        "the Appendix.",
        f"- **Was issuance stopped in response to this incident, and why or why not?:** {TO_WRITE}",
        f"- **Analysis:** {TO_WRITE} (N/A unless revocation is delayed)",
        f"- **Additional considerations:** {extra}",
    ]
    return "\n".join(lines)


def _remaining(incident: Incident) -> int:
    as_of = incident.body.as_of
    return sum(
        1
        for sha in incident.affected
        if incident.revoked(sha) is None
        and (sha not in incident.listed or incident.listed[sha].not_after > as_of)
    )


# --- Timeline, root causes, action items ---------------------------------------------------------


def _timeline(incident: Incident) -> str:
    rows = timeline(incident.chosen, incident.reports, incident.listed, incident.seen)
    table = [f"| {rfc3339(r.at)} | {md(r.event)} | {md(r.evidence)} |" for r in rows]
    return "\n".join(["### Timeline", "", "| time (UTC) | event | evidence |", "|---|---|---|"]) + (
        "\n" + "\n".join(table) if table else ""
    )


def _root_causes(incident: Incident, found: list[Failure]) -> str:
    parts = ["### Root Cause Analysis"]
    for n, failure in enumerate(found, start=1):
        detection = (
            f"found by invsync ({_codes(failure)}) in {report_ref(incident.body)}; how it "
            f"avoided detection before: {TO_WRITE}"
        )
        parts.append(
            f"**Contributing Factor {n}: {md(failure.title)}**\n"
            f"- **Description:** {TO_WRITE}\n"
            f"- **Timeline:** {TO_WRITE}\n"
            f"- **Detection:** {detection}\n"
            f"- **Interaction with other factors:** {TO_WRITE}\n"
            f"- **Root Cause Analysis methodology used:** {TO_WRITE}"
        )
    return "\n\n".join(parts)


def _actions(found: list[Failure]) -> str:
    header = (
        "| Action Item | Kind | Corresponding Root Cause(s) | Evaluation Criteria | Due Date "
        "| Status |\n|---|---|---|---|---|---|"
    )
    rows = [
        f"| {md(f.action)} | {TO_WRITE} | Contributing Factor {n} | {TO_WRITE} | {TO_WRITE} "
        "| Ongoing |"
        for n, f in enumerate(found, start=1)
    ]
    return "\n".join(["### Action Items", "", header, *rows])


# --- Appendix ----------------------------------------------------------------------------------

_APPENDIX_FIELDS = (
    "Precertificate SHA-256 hash",
    "Certificate SHA-256 hash",
    "Subject",
    "Issuer",
    "Not before",
    "Not after",
    "Serial #",
    "dNSNames",
    "Is revoked?",
    "Revocation date",
    "Revocation reason",
    "crt.sh",
    "Role",
)


def _appendix(incident: Incident) -> str:
    """Every affected certificate, then every doppelganger sibling, in the CCADB field order
    (invsync's columns appended to the right, as the layout asks)."""
    shas = [*incident.affected, *sorted(incident.siblings)]
    rows = [_row(incident, sha) for sha in shas]
    header = "| " + " | ".join(_APPENDIX_FIELDS) + " |\n|" + "---|" * len(_APPENDIX_FIELDS)
    return "\n".join(["### Appendix", "", header, *rows])


def _row(incident: Incident, sha: str) -> str:
    cert = incident.listed.get(sha)
    role = (
        f"doppelganger of {short(incident.siblings[sha])}"
        if sha in incident.siblings
        else "affected"
    )
    if cert is None:
        facts = [readable_dn(_subject_of(incident, sha)), "", "", "", ""]
    else:
        times = [rfc3339(cert.not_before), rfc3339(cert.not_after)]
        facts = [readable_dn(cert.subject), readable_dn(cert.issuer), *times, cert.serial]
    cells = [md(c) for c in ("N/A", sha, *facts, "N/A")]
    cells += [*_revocation(incident, sha, cert), md(CRT_SH + sha), md(role)]
    return "| " + " | ".join(cells) + " |"


def _revocation(incident: Incident, sha: str, cert: ListedCertificate | None) -> list[str]:
    """Is revoked?, revocation date and reason, as Markdown."""
    seen = incident.revoked(sha)
    if seen is not None and seen.revoked is not None:
        reason = seen.revoked.reason or "unspecified"
        when = rfc3339(seen.revoked.revoked_at)
        return ["Yes", when, md(f"{reason} (as {snapshot_ref(seen.mark)} records it)")]
    as_of = incident.body.as_of
    if cert is not None and cert.not_after <= as_of:
        return ["N/A", "N/A", "N/A"]
    if sha in incident.affected and _live(incident, sha):
        return [f"Planned or Delayed: not revoked as of {rfc3339(as_of)}", TO_WRITE, "N/A"]
    return ["not known from this report", "", ""]


def _live(incident: Incident, sha: str) -> bool:
    """Whether a finding of the report says the certificate is neither revoked nor expired:
    these rules give error only while it is live."""
    return any(
        f.sha256 == sha and f.code in _LIVE_ONLY and f.severity == "error" for f in incident.chosen
    )


_LIVE_ONLY = (MISSING_AT_SUBORDINATE, NOT_IN_AUDIT_SCOPE, UNUSED_NOT_REVOKED)


def affected_shas(chosen: Sequence[Finding]) -> frozenset[str]:
    """Every certificate a draft names: the findings' and their siblings'."""
    return frozenset(sha for f in chosen for sha in (f.sha256, *f.related) if sha)
