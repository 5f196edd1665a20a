"""`invsync incident draft`: one CCADB-layout incident report draft for several findings."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from invsync.agent.cli.options import PinnedIds, pin_option
from invsync.agent.cli.report import load_report, reader_pins
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ReportError, SignatureError
from invsync.agent.files import write_atomically
from invsync.agent.report.body import Pins, ReportBody, verify_report
from invsync.agent.report.files import ReportFile, report_files
from invsync.agent.report.incident import Incident, affected_shas, incident_draft
from invsync.agent.report.incident_history import Sighting, sightings
from invsync.agent.report.incident_select import select
from invsync.agent.store.agent_store import AgentStore


@click.group("incident")
def incident_group() -> None:
    """Draft incident reports from findings."""


@incident_group.command("draft")
@click.argument("refs", nargs=-1)
@click.option(
    "--certificate",
    "certificates",
    multiple=True,
    help="Every finding of the certificate with this SHA-256 (or prefix); repeatable.",
)
@click.option(
    "--open-errors", is_flag=True, help="Every error finding no party acknowledged in the report."
)
@click.option("--pairing", default=None, help="Take the latest report of this pairing.")
@click.option(
    "--report",
    "report",
    default=None,
    help="The report: a file, or an id in --dir (default: the latest report there).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An agent configuration: its report_dir, and its database's signed snapshots.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="A directory of report files (default: the agent's report_dir, or here).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An agent database: the first snapshot of each party holding each certificate.",
)
@pin_option(
    "Check every report's signatures with the key of this id for signer NAME (repeatable; "
    "with --config, the agent's pins too)."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the draft here instead of standard output.",
)
def draft_command(
    refs: tuple[str, ...],
    certificates: tuple[str, ...],
    open_errors: bool,
    pairing: str | None,
    report: str | None,
    config: Path | None,
    directory: Path | None,
    db: Path | None,
    pins: PinnedIds,
    output: Path | None,
) -> None:
    """Draft one incident report for the findings named by REFS (CODE:SHA256, or a SHA-256 or
    its prefix), --certificate and --open-errors, from a report file alone; with --config or
    --db, the timeline adds the first signed snapshot of each party holding each certificate
    and the one recording its revocation. With --pin or --config, every report the draft rests
    on must be signed by the server and both parties with pinned keys (exit 1 otherwise);
    without, the draft says its signatures were not checked."""
    agent_config = load_agent_config(config) if config else None
    where = directory or (agent_config.report_dir if agent_config else None)
    files = _history(report, where, pairing)
    chosen = select(files[-1].body.findings, refs, certificates, open_errors)
    database = db or (agent_config.database if agent_config else None)
    seen = _sightings(database, files[-1].body, affected_shas(chosen)) if database else []
    reports = tuple(f.body for f in files)
    checked = _signatures(files, reader_pins(pins, config))
    text = incident_draft(Incident(chosen, reports, tuple(seen), checked))
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)


def _history(report: str | None, where: Path | None, pairing: str | None) -> list[ReportFile]:
    """The pairing's reports up to the chosen one (the last), oldest first."""
    if report is not None:
        path, env, body = load_report(report, where or Path("."))
        current = ReportFile(path, env, body)
        if pairing is not None and body.pairing != pairing:
            raise ReportError(f"report {path} is of pairing {body.pairing!r}, not {pairing!r}")
        files = report_files(where or path.parent)
    else:
        files = report_files(where or Path("."))
        current = _latest(files, where or Path("."), pairing)
    same = [f for f in files if f.body.pairing == current.body.pairing]
    before = [
        f for f in same if f.body.as_of <= current.body.as_of and f.report_id != current.report_id
    ]
    return [*before, current]


def _signatures(files: list[ReportFile], pinned: Pins) -> str:
    """What the draft says of its reports' signatures; SignatureError names the first report
    that pinned keys do not fully sign: a draft never rests on a report nobody can vouch for."""
    if pinned == Pins():
        return (
            "Signatures not checked: no key pinned (--pin or --config). Check the reports with "
            "invsync report verify before filing."
        )
    for file in files:
        result = verify_report(file.envelope, pinned)
        if not result.complete:
            raise SignatureError(
                f"{file.path}: not signed by every party with a pinned key\n" + result.describe()
            )
    return (
        f"Signatures checked: each of the {len(files)} report(s) is signed by the server and both "
        "parties with pinned keys."
    )


def _latest(files: list[ReportFile], where: Path, pairing: str | None) -> ReportFile:
    of_pairing = [f for f in files if pairing is None or f.body.pairing == pairing]
    if not of_pairing:
        what = "no report" if pairing is None else f"no report of pairing {pairing!r}"
        raise ReportError(f"{what} in {where}; name one with --report")
    return of_pairing[-1]


def _sightings(database: Path, body: ReportBody, shas: frozenset[str]) -> list[Sighting]:
    with AgentStore(database, create=False, keeps=False) as store:
        return sightings(store, body.pairing, shas)
