"""The two-organization demo: SECOM (root) and JPRS (subordinate) as things stood in early 2021.

Builds a throwaway federation (TLS CA, server and client certificates, one signing key per
party and one for the server), starts an exchange server and two agents as separate processes
on loopback, runs one full cycle and prints the findings and the signed reports' paths.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import click

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.keys import load_verify_key
from invsync.agent.model.findings import Finding
from invsync.agent.report.body import Pins, parse_report_body, read_report_file, verify_report
from invsync.agent.report.render.text import findings_text
from invsync.server.localfed import (
    AS_OF,
    PARTIES,
    agent_config,
    run_agents,
    server_process,
    write_federation,
)

MARKER = ".invsync-demo"


class DemoError(InvsyncError):
    hint = "Read the process logs under the demo's logs/ directory."


class DemoDirectoryError(DemoError):
    hint = "Pass --workdir a new or empty directory, or one a previous demo made."


def run_demo(workdir: Path | None) -> None:
    work = _prepare(workdir)
    click.echo(f"demo directory: {work}")
    write_federation(work)
    with server_process(work) as port:
        click.echo(f"exchange server listening on 127.0.0.1:{port} (mutual TLS)")
        for party in PARTIES:
            (work / f"{party}.toml").write_text(agent_config(party, port))
        run_agents(work)
    _summarize(work)


def _prepare(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="invsync-demo-"))
    workdir = workdir.resolve()  # the processes run with the demo directory as their cwd
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / MARKER).exists():
            raise DemoDirectoryError(
                f"{workdir}: not empty and not a previous demo directory; choose another"
            )
        shutil.rmtree(workdir)  # a previous demo's state would not match the new federation
    workdir.mkdir(parents=True, exist_ok=True)  # an existing empty directory is fine
    (workdir / MARKER).write_text("made by `invsync demo`; deleted by the next run\n")
    return workdir


def _summarize(work: Path) -> None:
    reports = sorted((work / "reports").glob("*/*.report.json"))
    if not reports:
        raise DemoError(f"no report was written under {work / 'reports'}")
    env = read_report_file(reports[0])
    body = parse_report_body(env.payload)
    findings: tuple[Finding, ...] = tuple(body.findings)
    click.echo(f"\nfindings for pairing {body.pairing} as of {AS_OF} ({len(findings)}):")
    click.echo(findings_text(findings), nl=False)
    click.echo("\nsigned reports (and the same report for people: .md, .html, .csv):")
    for path in reports:
        click.echo(f"  {path}")
    page = reports[0].with_suffix("").with_suffix(".html")
    click.echo(f"\nopen {page} in a browser for the page both parties signed")
    _evidence_hint(work)
    click.echo("\n" + verify_report(env, _pins(work)).describe())


def _evidence_hint(work: Path) -> None:
    """How an auditor checks the whole exchange history of this demo, offline."""
    pins = " ".join(
        f"--pin {name}={load_verify_key(work / 'keys' / f'{key}.pub').keyid}"
        for name, key in (("demo-exchange", "server"), *((p, p) for p in PARTIES))
    )
    click.echo("\nthe whole exchange history, checked offline from the public keys alone:")
    click.echo(f"  invsync evidence export --server-config {work / 'server.toml'} --out BUNDLE")
    click.echo(f"  invsync evidence verify BUNDLE --server demo-exchange {pins}")


def _pins(work: Path) -> Pins:
    """The demo made all three signing keys, so it pins them: a report's own list of keys is
    never what its signatures are checked against."""
    keys = work / "keys"
    server = frozenset([load_verify_key(keys / "server.pub").keyid])
    parties = {
        party: frozenset([load_verify_key(keys / f"{party}.pub").keyid]) for party in PARTIES
    }
    return Pins(server=server, parties=parties)
