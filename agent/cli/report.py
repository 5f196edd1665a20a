"""`invsync report`: verify, list, show and compare signed reconciliation reports.

Reports are the signed DSSE files an agent writes to its `report_dir`; a REPORT argument is a
file path, or a report id (or a unique prefix of one) found in `--dir` / the agent's report_dir.

Every command judges signatures with pinned keys only (`--pin NAME=KEYID`, or the pins of an
agent's configuration with `--config`), never with the keys a report lists about itself: a
signer whose key is not pinned is shown as "unverified", never "valid".
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from invsync.agent.cli.entry import EXIT_FINDINGS, EXIT_OK
from invsync.agent.cli.options import PinnedIds, config_option, format_option, pin_option
from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.rotation import report_pins
from invsync.agent.errors import ReportError
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.report.body import (
    Pins,
    ReportBody,
    ReportVerification,
    parse_report_body,
    read_report_file,
    report_id,
    verify_report,
)
from invsync.agent.report.diff import diff_findings, diff_text
from invsync.agent.report.files import ReportFile, page, report_files
from invsync.agent.report.render.csv import findings_csv
from invsync.agent.report.render.text import findings_json, findings_text, report_markdown
from invsync.agent.store.agent_store import AgentStore


@click.group("report")
def report_group() -> None:
    """Verify, list, show and compare signed reconciliation reports."""


_pin_option = pin_option(
    "Trust the key with this id for signer NAME (repeatable; a name may have several)."
)


@report_group.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_pin_option
@config_option("Take the pins from this agent configuration (and its database's key rotations).")
def report_verify(files: tuple[Path, ...], pins: PinnedIds, config: Path | None) -> None:
    """Check every signature on each report FILE against pinned keys and say whose are present.

    Pin each signer with --pin NAME=KEYID, or take an agent's pins with --config AGENT.toml: the
    server's keys, the party's own and its peers' (with the rotations its database recorded).
    The keys a report lists about itself are never trusted: a valid signature by a key that is
    not pinned is "unverified".

    Exit status: 0 only if, in every file, the server and both parties signed with pinned keys
    and every signature is valid; 1 otherwise; 2 if a file cannot be read or an option is wrong.
    """
    pinned = reader_pins(pins, config)
    if pinned == Pins():
        click.echo("no key is pinned (--pin or --config): every signer is unverified", err=True)
    complete = True
    for file in files:
        result = verify_report(read_report_file(file), pinned)
        click.echo(f"{file}:\n{result.describe()}" if len(files) > 1 else result.describe())
        complete = complete and result.complete
    click.get_current_context().exit(EXIT_OK if complete else EXIT_FINDINGS)


def reader_pins(pins: PinnedIds, config: Path | None) -> Pins:
    """The --pin options, and the pins of the agent configuration `config` if one is given."""
    given = Pins(names=pins)
    return given if config is None else given.merged(config_pins(config))


def config_pins(path: Path) -> Pins:
    """What the agent configured at `path` pins, with the peer rotations its database recorded
    (none if it has no database yet)."""
    config = load_agent_config(path)
    if not config.database.exists():
        return report_pins(config, None)
    with AgentStore(config.database, create=False) as store:
        return report_pins(config, store)


def _where(f: Callable[..., Any]) -> Callable[..., Any]:
    f = _pin_option(f)
    f = config_option(
        "An agent configuration: its report_dir is searched, and its pins verify signatures."
    )(f)
    return click.option(
        "--dir",
        "directory",
        type=click.Path(path_type=Path, file_okay=False),
        help="A directory of report files (default: the current directory).",
    )(f)


def _directory(directory: Path | None, config: Path | None) -> Path:
    if directory is not None:
        return directory
    return load_agent_config(config).report_dir if config else Path(".")


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.report.json"))


def load_report(reference: str, directory: Path) -> tuple[Path, Envelope, ReportBody]:
    """A report by path, or by id or unique id prefix among the directory's report files."""
    path = Path(reference)
    if not path.is_file():
        path = _by_id(reference.lower(), directory)
    env = read_report_file(path)
    return path, env, parse_report_body(env.payload)


def _by_id(prefix: str, directory: Path) -> Path:
    found = [
        p for p in _files(directory) if report_id(read_report_file(p).payload).startswith(prefix)
    ]
    if len(found) != 1:
        what = "no report" if not found else f"{len(found)} reports"
        raise ReportError(f"{what} with id {prefix!r} in {directory}; give a longer id or a path")
    return found[0]


@report_group.command("list")
@_where
@format_option("text", "json")
def report_list(directory: Path | None, config: Path | None, pins: PinnedIds, fmt: str) -> None:
    """List the reports in a directory: id, pairing, as of, versions, findings, signatures
    ("complete" only when every signer is pinned and valid). By pairing, then as of, then in
    the order they were made (each report names the one it continues)."""
    pinned = reader_pins(pins, config)
    rows = _in_order([_summary(path, pinned) for path in _files(_directory(directory, config))])
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        counts = "/".join(str(r["summary"][k]) for k in ("error", "warning", "notice"))
        click.echo(
            f"{r['id'][:12]}  {r['pairing']}  {r['as_of']}  root v{r['root_version']}"
            f"  subordinate v{r['subordinate_version']}  e/w/n {counts}  {r['signatures']}"
        )
    click.echo(f"reports: {len(rows)}")


def _in_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` by pairing, as-of time, then how far down its pairing's chain of reports each
    is: with a fixed as-of (a replay), the order the server made them, as their signed bodies
    say (`previous_report`), not the order of their ids."""
    previous = {row["id"]: row["previous_report"] for row in rows}
    depth: dict[str, int] = {}

    def depth_of(report: str) -> int:
        if report not in depth:
            chain, at = [], report
            while at in previous and at not in depth and at not in chain:
                chain.append(at)
                at = previous[at] or ""
            base = depth.get(at, -1)
            for n, item in enumerate(reversed(chain), start=1):
                depth[item] = base + n
        return depth[report]

    return sorted(rows, key=lambda r: (r["pairing"], r["as_of"], depth_of(r["id"]), r["id"]))


def _summary(path: Path, pins: Pins) -> dict[str, Any]:
    env = read_report_file(path)
    body = parse_report_body(env.payload)
    verification = verify_report(env, pins)
    return {
        "id": report_id(env.payload),
        "file": str(path),
        "pairing": body.pairing,
        "as_of": body.as_of.isoformat().replace("+00:00", "Z"),
        "root_version": body.root.version,
        "subordinate_version": body.subordinate.version,
        "previous_report": body.previous_report or "",
        "summary": dict(body.summary),
        "signatures": "complete" if verification.complete else "incomplete",
    }


@report_group.command("show")
@click.argument("report")
@_where
@format_option(
    "text", "json", "markdown", "html", "csv", help="Output format: json is the signed body itself."
)
def report_show(
    report: str,
    directory: Path | None,
    config: Path | None,
    pins: PinnedIds,
    fmt: str,
) -> None:
    """Show one REPORT (a file, or an id in the directory) in a format for people or machines.

    `html` is a self-contained page with the pairing's history from the same directory;
    `csv` lists the findings for a spreadsheet (cells that could be formulas are quoted).
    Signatures are shown as the pins judge them."""
    where = _directory(directory, config)
    path, env, body = load_report(report, where)
    pinned = reader_pins(pins, config)
    if fmt == "html":
        files = report_files(where)
        current = next((f for f in files if f.path == path), None) or ReportFile(path, env, body)
        sys.stdout.write(page(current, files, pinned))
    elif fmt == "csv":
        sys.stdout.write(findings_csv(body.findings, body.certificates))
    elif fmt == "json":
        sys.stdout.write(env.payload.decode() + "\n")
    elif fmt == "markdown":
        click.echo(report_markdown(body, verify_report(env, pinned)), nl=False)
    else:
        click.echo(verify_report(env, pinned).describe())
        click.echo(findings_text(body.findings) or "no findings", nl=False)


@report_group.command("diff")
@click.argument("old")
@click.argument("new")
@_where
@format_option("text", "json")
def report_diff(
    old: str,
    new: str,
    directory: Path | None,
    config: Path | None,
    pins: PinnedIds,
    fmt: str,
) -> None:
    """What changed from report OLD to report NEW: new, resolved and changed findings, after
    each report's signatures as the pins judge them."""
    where = _directory(directory, config)
    pinned = reader_pins(pins, config)
    _, before_env, before = load_report(old, where)
    _, after_env, after = load_report(new, where)
    if before.pairing != after.pairing:
        raise ReportError(
            f"the reports are of different pairings: {before.pairing} and {after.pairing}"
        )
    checked = (verify_report(before_env, pinned), verify_report(after_env, pinned))
    diff = diff_findings(before.findings, after.findings)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "signatures": {"old": _roles(checked[0]), "new": _roles(checked[1])},
                    "new": json.loads(findings_json(diff.new))["findings"],
                    "resolved": json.loads(findings_json(diff.resolved))["findings"],
                    "changed": [{"old": o.to_json(), "new": n.to_json()} for o, n in diff.changed],
                },
                indent=2,
                default=str,
            )
        )
        return
    for label, verification in zip(("old", "new"), checked, strict=True):
        click.echo(f"{label} {verification.report_id[:12]}: {_verdict(verification)}")
    click.echo(diff_text(diff), nl=False)


def _roles(verification: ReportVerification) -> dict[str, str]:
    return {role: status.value for role, status in verification.roles.items()}


def _verdict(verification: ReportVerification) -> str:
    """describe()'s last line: complete or INCOMPLETE, and each role's status."""
    return verification.describe().splitlines()[-1]
