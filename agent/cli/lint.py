"""`invsync inventory lint`: the inventory's CA certificates against the CA/B Forum TLS BR
profile, by pkilint (opt-in; agent/inventory/lint.py says why it is not a report rule)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import click

from invsync.agent.cli.options import config_option, database_path, format_option
from invsync.agent.cli.outcomes import LintFindings
from invsync.agent.inventory.lint import (
    SEVERITIES,
    LintFinding,
    LintResult,
    lint_certificate,
    linter_version,
)
from invsync.agent.model.record import CertRecord
from invsync.agent.report.render.names import readable_dn
from invsync.agent.report.render.text import visible
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.telemetry.progress import terminal_progress
from invsync.agent.times import rfc3339


@click.command("lint")
@config_option("An agent configuration; its [agent] database is used.")
@click.option(
    "--db", type=click.Path(path_type=Path, dir_okay=False), help="The agent's SQLite database."
)
@click.option("--operator", default=None, help="Only CA certificates operated by this party.")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Expired and revoked CA certificates too (default: only live ones).",
)
@click.option(
    "--severity",
    type=click.Choice([s.lower() for s in SEVERITIES]),
    default="warning",
    show_default=True,
    help="The least severe finding shown.",
)
@format_option("text", "json")
def lint_command(
    config: Path | None,
    db: Path | None,
    operator: str | None,
    everything: bool,
    severity: str,
    fmt: str,
) -> None:
    """Check the inventory's CA certificates against the CA/Browser Forum TLS Baseline
    Requirements profile with pkilint (install with `pip install 'invsync[lint]'`).

    pkilint checks the current requirements (a finding on an old certificate may be a rule that
    came later: each certificate's notBefore is shown). Exits 1 when a certificate has an ERROR
    or FATAL finding."""
    version = linter_version()
    records = [r for r in _inventory(db, config) if _wanted(r, operator, everything)]
    progress = terminal_progress("linting CA certificates")
    results = []
    for done, record in enumerate(records, 1):
        results.append(lint_certificate(record.info.der, record.sha256))
        progress(done, len(records))
    render = _json if fmt == "json" else _text
    click.echo(render(records, results, severity.upper(), version), nl=False)
    failing = sum(1 for result in results if result.at_least("ERROR"))
    if failing:
        raise LintFindings(f"{failing} of {len(results)} CA certificates have ERROR findings")


def _inventory(db: Path | None, config: Path | None) -> list[CertRecord]:
    with AgentStore(database_path(db, config), create=False) as store:
        return list(store.inventory())


def _wanted(record: CertRecord, operator: str | None, everything: bool) -> bool:
    live = record.revocation is None and record.info.not_after > datetime.now(UTC)
    return (
        record.info.is_ca
        and (operator is None or record.operator == operator)
        and (everything or live)
    )


def _text(
    records: list[CertRecord], results: Iterable[LintResult], shown: str, version: str
) -> str:
    lines = [f"pkilint {version}, CA/Browser Forum TLS Baseline Requirements profile"]
    for record, result in zip(records, results, strict=True):
        issued = record.info.not_before.date().isoformat()
        subject = visible(readable_dn(record.info.subject))
        lines.append(f"{record.sha256[:16]}  {issued}  {result.kind}  {subject}")
        lines += [_line(f) for f in result.at_least(shown)]
    lines.append(f"{len(records)} CA certificates checked")
    return "".join(line + "\n" for line in lines)


def _line(finding: LintFinding) -> str:
    said = f": {visible(finding.message)}" if finding.message else ""
    return f"  {finding.severity:<7} {finding.code}  ({finding.where}){said}"


def _json(
    records: list[CertRecord], results: Iterable[LintResult], shown: str, version: str
) -> str:
    rows = [
        {
            "sha256": record.sha256,
            "subject": record.info.subject,
            "not_before": rfc3339(record.info.not_before),
            "type": result.kind,
            "findings": [
                {"severity": f.severity, "code": f.code, "where": f.where, "message": f.message}
                for f in result.at_least(shown)
            ],
        }
        for record, result in zip(records, results, strict=True)
    ]
    return json.dumps({"linter": f"pkilint {version}", "certificates": rows}, indent=2) + "\n"
