"""`invsync reconcile`: two parties' lists compared offline, with no server and no configuration."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from invsync.agent.cli.entry import EXIT_FINDINGS, EXIT_OK
from invsync.agent.cli.options import audit_options, format_option, max_source_bytes_option
from invsync.agent.cli.types import RfcTime
from invsync.agent.gc_pause import collector_paused
from invsync.agent.inventory.by_fingerprint import OfflineSide
from invsync.agent.inventory.offline import PublicSources, compared_sides
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.build import offline_report
from invsync.agent.report.certificates import CertificateLookup, lookup_in
from invsync.agent.report.render.text import findings_json, findings_text, report_markdown
from invsync.agent.sources.reading import source_size_cap
from invsync.agent.telemetry.progress import terminal_progress


@click.command("reconcile")
@click.option(
    "--root",
    "root_sources",
    multiple=True,
    required=True,
    metavar="SOURCE",
    help="A source of the root operator's list: PEM, DER, PKCS#7, directory, issuance log "
    "(.jsonl or .csv), CT entries; KIND:PATH overrides detection. Repeat for each source.",
)
@click.option(
    "--subordinate",
    "sub_sources",
    multiple=True,
    required=True,
    metavar="SOURCE",
    help="A source of the subordinate operator's list (same kinds). Repeat for each source.",
)
@click.option(
    "--ccadb", multiple=True, metavar="SOURCE", help="A CCADB report (V5 records or PEMs)."
)
@click.option("--crl", multiple=True, metavar="SOURCE", help="A CRL (DER or PEM).")
@click.option(
    "--audit-scope",
    multiple=True,
    metavar="SOURCE",
    help="An audit's list of in-scope fingerprints (CSV, text or PDF).",
)
@audit_options
@click.option("--skip-invalid", is_flag=True, help="Leave out bad rows, and list each one.")
@click.option(
    "--at",
    "at",
    type=RfcTime(),
    default=None,
    help="Evaluate as of this time (RFC 3339); default: now.",
)
@max_source_bytes_option("256 MiB")
@format_option("text", "json", "markdown")
def reconcile_command(
    root_sources: tuple[str, ...],
    sub_sources: tuple[str, ...],
    ccadb: tuple[str, ...],
    crl: tuple[str, ...],
    audit_scope: tuple[str, ...],
    audit: AuditPeriod | None,
    skip_invalid: bool,
    at: datetime | None,
    max_source_bytes: int | None,
    fmt: str,
) -> None:
    """Compare two parties' CA certificate lists offline, with no server and no configuration.

    Each source option takes one SOURCE and may be repeated: --root A --root B. Each side's
    sources are taken as the pairing's scope: every CA certificate in them except self-signed
    roots. CCADB reports, CRLs and audit scope lists add the public view to both sides.
    Without them, two lists of PEM files are compared by fingerprint first, and only the
    certificates a rule can need are parsed (docs/sources.md).

    Exit status: 0 when no finding has severity error; 1 when one does; 2 if a source cannot be
    read or an option is wrong.
    """
    at = at or datetime.now(UTC)
    ctx = SourceContext(
        now=at, audit=audit, skip_invalid=skip_invalid, progress=terminal_progress("reading")
    )
    public = PublicSources(ccadb, crl, audit_scope)
    # agent.gc_pause: both lists' records built and compared, then the process ends.
    with collector_paused(exiting=True):
        with source_size_cap(max_source_bytes):
            root_side, sub_side = compared_sides(root_sources, sub_sources, public, ctx)
        _notes("--root", root_side)
        _notes("--subordinate", sub_side)
        findings = reconcile(
            Side("root", root_side.records), Side("subordinate", sub_side.records), at
        )
    inputs = {"root": inputs_summary(root_side), "subordinate": inputs_summary(sub_side)}
    if fmt != "json":
        for side, counts in inputs.items():
            click.echo(
                f"note: {side}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), err=True
            )
    lookup = lookup_in(root_side.records, sub_side.records)
    click.echo(_render(findings, fmt, at, inputs, lookup), nl=False)
    errors = any(f.severity == Severity.ERROR for f in findings)
    click.get_current_context().exit(EXIT_FINDINGS if errors else EXIT_OK)


def _notes(option: str, side: OfflineSide) -> None:
    for skipped in side.skipped:
        click.echo(f"skipped: {skipped.location}: {skipped.reason}", err=True)
    if side.in_scope < side.held:
        click.echo(
            f"note: {option}: set aside {side.held - side.in_scope} of {side.held} "
            "certificates that are self-signed or not CA certificates",
            err=True,
        )


def inputs_summary(side: OfflineSide) -> dict[str, int]:
    """What each side brought: CA certificates in scope, and how many carry each fact of the
    public view (counted over the records read: by fingerprint first, there is no public view,
    and every count but the first is 0 for any reading)."""
    records = side.records
    return {
        "ca_certificates": side.in_scope,
        "disclosed_in_ccadb": sum(1 for r in records if r.disclosure),
        "in_an_audit_scope": sum(1 for r in records if r.audit_scope),
        "revoked": sum(1 for r in records if r.revocation),
        "revoked_per_crl": sum(
            1 for r in records if any(e.source.startswith("crl:") for e in r.revocation_evidence)
        ),
    }


def _render(
    findings: tuple[Finding, ...],
    fmt: str,
    at: datetime,
    inputs: dict[str, dict[str, int]],
    certificates: CertificateLookup,
) -> str:
    if fmt == "json":
        return findings_json(findings, as_of=at, inputs=inputs) + "\n"
    if fmt == "markdown":
        return report_markdown(offline_report(findings, at, certificates), None)
    return findings_text(findings) or "no findings\n"
