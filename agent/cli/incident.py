"""`invsync incident draft`: a CCADB-layout incident report draft for one finding."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from invsync.agent.cli.report import load_report
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ReportError
from invsync.agent.files import write_atomically
from invsync.agent.model.findings import Finding
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import report_id
from invsync.agent.report.files import report_files
from invsync.agent.report.incident import incident_draft
from invsync.agent.store.agent_store import AgentStore


@click.group("incident")
def incident_group() -> None:
    """Draft incident reports from findings."""


@incident_group.command("draft")
@click.argument("finding")
@click.option(
    "--report",
    "report",
    default=None,
    help="The report: a file, or an id in --dir (default: the latest report there).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An agent configuration: its report_dir and its inventory's history are used.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="A directory of report files (default: the agent's report_dir, or here).",
)
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="An agent database.")
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the draft here instead of standard output.",
)
def draft_command(
    finding: str,
    report: str | None,
    config: Path | None,
    directory: Path | None,
    db: Path | None,
    output: Path | None,
) -> None:
    """Draft an incident report for FINDING (CODE:SHA256, or a SHA-256 or its prefix) of a
    report, with a timeline from the inventory's history when --config or --db is given."""
    agent_config = load_agent_config(config) if config else None
    where = directory or (agent_config.report_dir if agent_config else Path("."))
    _, env, body = load_report(report or _latest(where), where)
    chosen = pick(finding, body.findings)
    database = db or (agent_config.database if agent_config else None)
    records = _records(database, [chosen.sha256, *chosen.related]) if database else []
    text = incident_draft(chosen, body, records, report_id(env.payload))
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)


def _latest(directory: Path) -> str:
    files = report_files(directory)
    if not files:
        raise ReportError(f"no report in {directory}; name one with --report")
    return str(files[-1].path)


def pick(reference: str, findings: tuple[Finding, ...]) -> Finding:
    """The finding `reference` names: CODE:SHA256-or-prefix, or a SHA-256 prefix alone."""
    code, sep, sha = reference.rpartition(":")
    sha = sha.upper()
    found = [f for f in findings if f.sha256.startswith(sha) and (not sep or f.code == code)]
    if len(found) != 1:
        listed = ", ".join(f"{f.code}:{f.sha256[:16]}" for f in found) or "none"
        raise ReportError(f"{reference!r} names {len(found)} findings of the report ({listed})")
    return found[0]


def _records(database: Path, shas: list[str]) -> list[CertRecord]:
    with AgentStore(database, create=False) as store:
        return [r for r in (store.record(sha) for sha in shas) if r is not None]
