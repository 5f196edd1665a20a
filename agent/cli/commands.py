"""The `invsync` commands an agent host needs: offline reconcile, report verification, the agent.

`server/cli.py` adds the server commands and is the console entry point, because `agent` never
imports `server`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from invsync.agent.cli.options import audit_options, config_option, format_option
from invsync.agent.config.keyfiles import check_agent_keys
from invsync.agent.config.settings import AgentConfig, PairingConfig, load_agent_config
from invsync.agent.daemon.cycle import Agent, PushOutcome
from invsync.agent.errors import ConfigError, InvsyncError, ReportError, TransportError
from invsync.agent.exchange.client import rejection_rule
from invsync.agent.inventory.assemble import Assembled
from invsync.agent.inventory.offline import PublicSources, offline_sides
from invsync.agent.inventory.scope import issued_ca_certificates
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.facts import AuditPeriod
from invsync.agent.model.findings import Finding, Severity
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import SnapshotRef, build_report_body, parse_report_body
from invsync.agent.report.render.text import findings_json, findings_text, report_markdown
from invsync.agent.store.lock import DaemonLock
from invsync.agent.telemetry import metrics
from invsync.agent.telemetry.logs import log_context, setup_logging
from invsync.agent.telemetry.progress import terminal_progress
from invsync.agent.times import rfc3339

MAX_EXIT = 100


class RfcTime(click.ParamType):  # type: ignore[type-arg]
    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not an RFC 3339 time such as 2021-03-10T00:00:00Z", param, ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed


class GreedyCommand(click.Command):
    """Lets `--root A B C` stand for `--root A --root B --root C`, as the usage line promises.

    Click options take one value each; this rewrites the arguments before click parses them.
    A value that starts with "-" ends the run, so other options still work in any order.
    """

    greedy = ("--root", "--subordinate")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _spread(args, self.greedy))


def _spread(args: list[str], greedy: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    current: str | None = None
    for arg in args:
        if arg.startswith("-"):
            current = arg if arg in greedy else None
            out.append(arg)
        elif current is not None and out[-1] != current:
            out += [current, arg]
        else:
            out.append(arg)
    return out


@click.command("reconcile", cls=GreedyCommand)
@click.option(
    "--root",
    "root_sources",
    multiple=True,
    required=True,
    metavar="SOURCE",
    help="Sources of the root operator's list: PEM, DER, PKCS#7, directory, issuance log "
    "(.jsonl or .csv), CT entries; KIND:PATH overrides detection.",
)
@click.option(
    "--subordinate",
    "sub_sources",
    multiple=True,
    required=True,
    metavar="SOURCE",
    help="Sources of the subordinate operator's list (same kinds).",
)
@click.option(
    "--ccadb", multiple=True, metavar="SOURCE", help="CCADB reports (V5 records or PEMs)."
)
@click.option("--crl", multiple=True, metavar="SOURCE", help="CRLs (DER or PEM).")
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
    fmt: str,
) -> None:
    """Compare two parties' CA certificate lists offline, with no server and no configuration.

    Each side's sources are taken as the pairing's scope: every CA certificate in them except
    self-signed roots. CCADB reports, CRLs and audit scope lists add the public view to both
    sides. The exit code is the number of findings of severity error, capped at 100.
    """
    at = at or datetime.now(UTC)
    ctx = SourceContext(
        now=at, audit=audit, skip_invalid=skip_invalid, progress=terminal_progress("reading")
    )
    public = PublicSources(ccadb, crl, audit_scope)
    root_view, sub_view = offline_sides(root_sources, sub_sources, public, ctx)
    root = Side("root", _offline_scope("--root", root_view))
    sub = Side("subordinate", _offline_scope("--subordinate", sub_view))
    findings = reconcile(root, sub, at)
    inputs = {"root": inputs_summary(root.records), "subordinate": inputs_summary(sub.records)}
    if fmt != "json":
        for side, counts in inputs.items():
            click.echo(
                f"note: {side}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), err=True
            )
    click.echo(_render(findings, fmt, at, inputs), nl=False)
    errors = sum(1 for f in findings if f.severity == Severity.ERROR)
    sys.exit(min(errors, MAX_EXIT))


def _offline_scope(option: str, assembled: Assembled) -> list[CertRecord]:
    records = assembled.records
    for skipped in assembled.skipped:
        click.echo(f"skipped: {skipped.location}: {skipped.reason}", err=True)
    scoped = issued_ca_certificates(records)
    if len(scoped) < len(records):
        click.echo(
            f"note: {option}: set aside {len(records) - len(scoped)} of {len(records)} "
            "certificates that are self-signed or not CA certificates",
            err=True,
        )
    return scoped


def inputs_summary(records: Sequence[CertRecord]) -> dict[str, int]:
    """What each side brought: certificates, and how many carry each fact of the public view."""
    return {
        "ca_certificates": len(records),
        "disclosed_in_ccadb": sum(1 for r in records if r.disclosure),
        "in_an_audit_scope": sum(1 for r in records if r.audit_scope),
        "revoked": sum(1 for r in records if r.revocation),
        "revoked_per_crl": sum(
            1 for r in records if any(e.source.startswith("crl:") for e in r.revocation_evidence)
        ),
    }


def _render(
    findings: tuple[Finding, ...], fmt: str, at: datetime, inputs: dict[str, dict[str, int]]
) -> str:
    if fmt == "json":
        return findings_json(findings, as_of=at, inputs=inputs) + "\n"
    if fmt == "markdown":
        ref = SnapshotRef("root", ROOT, 0, "")
        body = build_report_body(
            pairing="offline",
            as_of=at,
            root=ref,
            subordinate=SnapshotRef("subordinate", SUBORDINATE, 0, ""),
            findings=findings,
            signers=[],
        )
        return report_markdown(parse_report_body(body), None)
    return findings_text(findings) or "no findings\n"


@click.group("agent")
def agent_group() -> None:
    """Run the inventory agent of one party."""


@agent_group.command("run")
@config_option("The agent's TOML configuration.", required=True)
@click.option("--once", is_flag=True, help="Run one full cycle, write the reports and exit.")
@click.option(
    "--interval",
    default=3600,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between cycles when not --once.",
)
@click.option(
    "--wait",
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a cycle waits for the report and the peer's signature.",
)
def agent_run(config_path: Path, once: bool, interval: int, wait: float) -> None:
    """Collect the inventory, push signed snapshots, co-sign and write the reports.

    Without --once it runs a cycle every --interval seconds, and at once on SIGHUP; SIGTERM
    ends it after the cycle under way (every cycle commits or writes nothing), exit status 0.
    """
    config = load_agent_config(config_path)
    if not once:
        _check_interval(config, interval)
    check_agent_keys(config)  # before the lock: a refused start leaves nothing behind
    with DaemonLock(config.database), log_context(party=config.party):
        metrics.serve(config.metrics_listen, f"{config.file}: agent.metrics_listen")
        agent = Agent(config)
        try:
            _run(agent, once, interval, wait)
        finally:
            agent.close()


def _run(agent: Agent, once: bool, interval: int, wait: float) -> None:
    if once:
        if not _cycle(agent, wait):
            raise ReportError("the report is not signed by every party yet; see above")
        return
    wake, stop = threading.Event(), threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()
        wake.set()

    signal.signal(signal.SIGHUP, lambda signum, frame: wake.set())
    signal.signal(signal.SIGTERM, on_term)
    while not stop.is_set():
        _cycle_logged(agent, wait)
        wake.wait(interval)  # SIGHUP starts the next cycle at once; SIGTERM ends the loop
        wake.clear()
    click.echo(f"{agent.config.party}: stopped")


def _cycle_logged(agent: Agent, wait: float) -> None:
    """A daemon outlives a failed cycle: the error is logged and the next cycle retries."""
    try:
        _cycle(agent, wait)
    except InvsyncError as e:
        logging.getLogger("invsync.agent").error("cycle failed: %s", e)


def _cycle(agent: Agent, wait: float) -> bool:
    """One cycle over every pairing; True when each report carries every signature."""
    party = agent.config.party
    count = agent.collect()
    click.echo(f"{party}: collected {count} certificates")
    complete = True
    for pairing in agent.config.pairings.values():
        with log_context(pairing=pairing.name, peer=pairing.peer):
            complete = _pairing_cycle(agent, pairing, wait) and complete
    return complete


def _pairing_cycle(agent: Agent, pairing: PairingConfig, wait: float) -> bool:
    party = agent.config.party
    outcome = _push(agent, pairing)
    click.echo(_push_line(party, pairing.name, outcome))
    with log_context(version=outcome.version):
        result = agent.settle(pairing, wait)
    roles = ", ".join(f"{r} {s.value}" for r, s in result.verification.roles.items())
    click.echo(f"{party}: report {result.report_path} ({roles})")
    return result.complete


def _push_line(party: str, pairing: str, outcome: PushOutcome) -> str:
    if outcome.reason is None:
        return (
            f"{party}: {pairing} unchanged since snapshot version {outcome.version} "
            f"(expires {rfc3339(outcome.expires_at)})"
        )
    return f"{party}: pushed {pairing} snapshot version {outcome.version} ({outcome.reason.value})"


def _check_interval(config: AgentConfig, interval: int) -> None:
    """A cycle must come between a snapshot's refresh age and its expiry, or it lapses."""
    window = config.snapshot_validity_seconds - config.snapshot_refresh_seconds
    if interval >= window:
        raise ConfigError(
            f"--interval {interval} s is not shorter than the {window} s between a snapshot's "
            f"refresh (agent.snapshot_refresh_seconds = {config.snapshot_refresh_seconds}) and "
            f"its expiry (agent.snapshot_validity_seconds = {config.snapshot_validity_seconds}) "
            f"in {config.file}: the snapshot would expire between cycles"
        )


def _push(agent: Agent, pairing: PairingConfig) -> PushOutcome:
    """Push the pairing's next snapshot if due, counting it accepted, or rejected under its rule."""
    try:
        outcome = agent.sync(pairing)
    except TransportError as e:
        rule = rejection_rule(e)
        if rule is not None:  # else the server never answered: no verdict to count
            metrics.SNAPSHOTS_PUSHED.labels(pairing.name, metrics.REJECTED, rule).inc()
        raise
    if outcome.pushed:
        metrics.SNAPSHOTS_PUSHED.labels(pairing.name, metrics.ACCEPTED, "").inc()
    return outcome


def run_cli(group: click.Group) -> None:
    """Run `group`, turning every InvsyncError into its diagnostics and exit status 2."""
    setup_logging()
    try:
        group.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except InvsyncError as e:
        click.echo(e.diagnostics(), err=True)
        sys.exit(2)


__all__ = ["ReportError", "agent_group", "reconcile_command", "run_cli"]
