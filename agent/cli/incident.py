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
from invsync.agent.report.body import Pins, ReportBody, SignerStatus, verify_report
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
    and the one recording its revocation. With --pin or --config, the draft rests only on
    reports the server and both parties signed with pinned keys: one a party has not co-signed
    yet is left out, and a signature that does not verify stops it (exit 1); without pins, the
    draft says its signatures were not checked."""
    agent_config = load_agent_config(config) if config else None
    where = directory or (agent_config.report_dir if agent_config else None)
    pinned = reader_pins(pins, config)
    files = _history(report, where, pairing, pinned)
    chosen = select(files[-1].body.findings, refs, certificates, open_errors)
    database = db or (agent_config.database if agent_config else None)
    seen = _sightings(database, files[-1].body, affected_shas(chosen)) if database else []
    reports = tuple(f.body for f in files)
    text = incident_draft(Incident(chosen, reports, tuple(seen), _said(files, pinned)))
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomically(output, text)
        click.echo(f"wrote {output}", err=True)


def _history(
    report: str | None, where: Path | None, pairing: str | None, pinned: Pins
) -> list[ReportFile]:
    """The pairing's reports up to the chosen one (the last), oldest first; with pins, only
    those every party signed with a pinned key (the latest such by default)."""
    if report is not None:
        path, env, body = load_report(report, where or Path("."))
        current = ReportFile(path, env, body)
        if pairing is not None and body.pairing != pairing:
            raise ReportError(f"report {path} is of pairing {body.pairing!r}, not {pairing!r}")
        if not _vouched(current, pinned):
            raise NotCosigned(f"{path}: not signed by every party yet; name a complete report")
        files = [f for f in report_files(where or path.parent) if _vouched(f, pinned)]
    else:
        every = report_files(where or Path("."))
        files = [f for f in every if _vouched(f, pinned)]
        if every and not files:
            raise NotCosigned(f"no report in {where or Path('.')} is signed by every party")
        current = _latest(files, where or Path("."), pairing)
    same = [f for f in files if f.body.pairing == current.body.pairing]
    before = [
        f for f in same if f.body.as_of <= current.body.as_of and f.report_id != current.report_id
    ]
    return [*before, current]


class NotCosigned(ReportError):
    hint = (
        "A party has not co-signed the report yet: wait for its agent's next cycle, or name a "
        "report every party signed with --report (`invsync report list` shows which)."
    )


def _vouched(file: ReportFile, pinned: Pins) -> bool:
    """Whether a draft may rest on `file`: always without pins (the draft says so); with pins,
    when every party signed it with a pinned key. A signature that does not verify, or a key
    other than the pinned one, is a SignatureError naming the file: a draft never rests on, or
    quietly skips, a report somebody altered."""
    if pinned == Pins():
        return True
    result = verify_report(file.envelope, pinned)
    if any(c.status in (SignerStatus.INVALID, SignerStatus.UNTRUSTED) for c in result.checks):
        raise SignatureError(
            f"{file.path}: a signature does not verify with the pinned keys\n" + result.describe()
        )
    return result.complete


def _said(files: list[ReportFile], pinned: Pins) -> str:
    """What the draft says of its reports' signatures."""
    if pinned == Pins():
        return (
            "Signatures not checked: no key pinned (--pin or --config). Check the reports with "
            "invsync report verify before filing."
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
