"""`invsync evidence`: export an evidence bundle of the exchange's log, and verify one offline.

`export --config` reads the log as a party, over the agent's mutual-TLS client. `export
--server-config` reads the server's database; that code lives in `server/`, which the agent never
imports, so server/evidence_cli.py hands it in (`evidence_group(server_export=...)`).

`verify` trusts only the pinned key ids (`--pin NAME=KEYID`: the server's under its configured
name, which `--server NAME` gives, each party's under its own) and the keys they announced
in-band. Exit status 0 only when every check passes; 1 when a check fails (the message names
the check and the entry); 2 when the bundle cannot be read or an argument is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.agent.cli.options import PinnedIds, pin_option
from invsync.agent.evidence.bundle import Bundle
from invsync.agent.evidence.failures import CheckFailed
from invsync.agent.evidence.remote import export_from_agent
from invsync.agent.evidence.summary import write_summaries
from invsync.agent.evidence.timeline import timeline_text, verdict
from invsync.agent.evidence.verify import verify_bundle

# (server configuration, pairing or None for all, destination) -> the bundle written
ServerExport = Callable[[Path, str | None, Path], Bundle]


def evidence_group(server_export: ServerExport | None = None) -> click.Group:
    """The `evidence` commands; `server_export` enables `export --server-config`."""
    group = click.Group(
        "evidence", help="Export and verify evidence bundles of the exchange's transparency log."
    )
    group.add_command(_export_command(server_export))
    group.add_command(verify_command)
    return group


def _export_command(server_export: ServerExport | None) -> click.Command:
    @click.command("export")
    @click.option(
        "--config",
        "config",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Export as this agent's party: read the log from the exchange over mutual TLS.",
    )
    @click.option(
        "--server-config",
        "server_config",
        type=click.Path(path_type=Path, dir_okay=False),
        hidden=server_export is None,
        help="Export on the exchange server: read the log from its database directly.",
    )
    @click.option(
        "--pairing",
        default=None,
        metavar="NAME",
        help="Export this pairing's entries only (default: every pairing the exporter reads).",
    )
    @click.option(
        "--out",
        required=True,
        type=click.Path(path_type=Path, file_okay=False),
        help="The bundle directory to create; it must not exist or be empty.",
    )
    def export(
        config: Path | None, server_config: Path | None, pairing: str | None, out: Path
    ) -> None:
        """Write an evidence bundle: the log's entries of one pairing (or all) in log order,
        its checkpoints, the proofs tying them together, the public keys and their rotations,
        and a manifest of file digests. What is fetched is verified before it is written."""
        if (config is None) == (server_config is None):
            raise click.UsageError("give exactly one of --config and --server-config")
        if server_config is not None:
            if server_export is None:
                raise click.UsageError("--server-config needs the server's installation")
            bundle = server_export(server_config, pairing, out)
        else:
            assert config is not None
            bundle = export_from_agent(config, pairing, out)
        held = sum(1 for e in bundle.entries if not e.withheld)
        click.echo(
            f"wrote {out}: {len(bundle.entries)} log entries of {bundle.server}, {held} held "
            f"({bundle.scope}), {len(bundle.checkpoints)} checkpoints"
        )

    return export


@click.command("verify")
@click.argument("bundle", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--server",
    "server",
    required=True,
    metavar="NAME",
    help="The exchange server's configured name, as you know it out of band: the bundle must be "
    "its log, and only keys pinned under NAME verify checkpoints, receipts and reports.",
)
@pin_option(
    "Trust the key with this id for NAME: the server under its configured name, and each "
    "party (repeatable; a name may have several)."
)
@click.option(
    "--summary-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Also write evidence.md and evidence.html for an auditor into this directory.",
)
def verify_command(bundle: Path, server: str, pins: PinnedIds, summary_dir: Path | None) -> None:
    """Verify the evidence BUNDLE offline, with the pinned keys alone, and print each pairing's
    timeline.

    Exit status: 0 when every check passes; 1 when one fails (the message names the check and
    the entry); 2 when the bundle cannot be read or an option is wrong."""
    try:
        verified = verify_bundle(bundle, pins, server)
    except CheckFailed as e:
        click.echo(e.diagnostics(), err=True)
        click.get_current_context().exit(EXIT_FINDINGS)
    click.echo(timeline_text(verified), nl=False)
    if summary_dir is not None:
        for path in write_summaries(verified, summary_dir):
            click.echo(f"wrote {path}")
    click.echo(verdict(verified))
