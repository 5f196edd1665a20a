"""`invsync agent`: the inventory agent of one party, as a daemon or for one cycle."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import click

from invsync.agent.cli.options import config_option
from invsync.agent.cli.outcomes import ErrorFindings, IncompleteReport
from invsync.agent.config.keyfiles import check_agent_keys
from invsync.agent.config.settings import AgentConfig, PairingConfig, load_agent_config
from invsync.agent.daemon.config_watch import CHANGED, ConfigWatch, is_stop, wait_for_event
from invsync.agent.daemon.cycle import Agent, PushOutcome
from invsync.agent.daemon.reload import Loaded, changes, reloaded_config
from invsync.agent.daemon.signals import SignalWaiter
from invsync.agent.daemon.writing import CycleResult
from invsync.agent.errors import ConfigError, InvsyncError, TransportError
from invsync.agent.exchange.client import NotFoundYet, Refused, rejection_rule
from invsync.agent.gc_pause import collector_paused
from invsync.agent.store.lock import DaemonLock
from invsync.agent.telemetry import metrics
from invsync.agent.telemetry.logs import log_context
from invsync.agent.times import rfc3339

_log = logging.getLogger("invsync.agent")


@click.group("agent")
def agent_group() -> None:
    """Run the inventory agent of one party."""


@agent_group.command("run")
@config_option("The agent's TOML configuration.", required=True)
@click.option(
    "--once",
    is_flag=True,
    help="Run one full cycle, write the reports and exit: 1 if a report is not signed by every "
    "party or holds open findings of severity error, else 0.",
)
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
    watch = ConfigWatch(config_path)  # before the load: a change from now on is a reload
    config = load_agent_config(config_path)
    if not once:
        _check_interval(config, interval)
    check_agent_keys(config)  # before the lock: a refused start leaves nothing behind
    with DaemonLock(config.database), log_context(party=config.party):
        metrics.serve(config.metrics_listen, f"{config.file}: agent.metrics_listen")
        if once:
            _run_once(config, wait)
        else:
            _run_daemon(config, watch, interval, wait)


def _run_once(config: AgentConfig, wait: float) -> None:
    agent = Agent(config, keeps=False)
    try:
        _check_once(_cycle(agent, wait, exiting=True))
    finally:
        agent.close()


def _run_daemon(config: AgentConfig, watch: ConfigWatch, interval: int, wait: float) -> None:
    """A cycle now, then every `interval` seconds; at once on SIGHUP or a change of the
    configuration file, which is read again first (agent.daemon.reload)."""
    loaded = Loaded.of(config)
    agent = Agent(config)
    try:
        with SignalWaiter((signal.SIGHUP, signal.SIGTERM)) as waiter:
            while True:
                started = time.monotonic()
                _cycle_logged(agent, wait)
                click.echo(
                    f"{agent.config.party}: cycle ended after {time.monotonic() - started:.1f} s;"
                    f" the next in {interval} s, or at once on SIGHUP"
                )
                event = wait_for_event(waiter, watch, interval)
                if is_stop(event):  # SIGTERM ends the loop after the cycle under way
                    break
                if event:  # SIGHUP or a changed file; a timeout only cycles
                    watch.mark()  # before the load (agent.daemon.config_watch)
                    agent, loaded = _reloaded(agent, loaded, interval, changed=event == CHANGED)
    finally:
        agent.close()
    click.echo(f"{config.party}: stopped")


def _reloaded(
    agent: Agent, loaded: Loaded, interval: int, *, changed: bool
) -> tuple[Agent, Loaded]:
    """The agent of the configuration file as it is now; `agent` itself when the file is
    refused, or when neither it nor the files an agent reads once changed (a SIGHUP that only
    asks for a cycle keeps what the daemon holds between cycles)."""
    file, party = agent.config.file, agent.config.party
    if changed:
        click.echo(f"{party}: {file} changed: reloading it")
    try:
        new = Loaded.of(reloaded_config(agent.config))
        _check_interval(new.config, interval)
    except InvsyncError as e:
        _log.error("reload of %s refused, the running configuration stays: %s", file, e)
        return agent, loaded
    if new == loaded:
        if changed:
            click.echo(f"{party}: {file}: nothing to apply")
        return agent, loaded
    agent.close()
    try:
        fresh = Agent(new.config)
    except (InvsyncError, OSError) as e:
        # Checked whole before, so a file changed or gone since: the agent as it ran before is
        # made again (if that fails too, the daemon stops with its error, and a restart or
        # systemd's Restart= takes over).
        _log.error("reload of %s failed, the running configuration stays: %s", file, e)
        return Agent(agent.config), loaded
    click.echo(f"{party}: reloaded {file}: {changes(agent.config, new.config)}")
    if new.config.metrics_listen != agent.config.metrics_listen:
        _log.warning(
            "%s: agent.metrics_listen changed; metrics stay on %r until the daemon restarts",
            file,
            agent.config.metrics_listen,
        )
    return fresh, new


def _check_once(results: list[CycleResult]) -> None:
    """Exit 1 for a report some party has not signed, or one with open error findings."""
    if not all(r.complete for r in results):
        raise IncompleteReport("the report is not signed by every party yet; see above")
    errors = {r.pairing: r.open_errors for r in results if r.open_errors}
    if errors:
        each = ", ".join(f"{pairing} {n}" for pairing, n in errors.items())
        raise ErrorFindings(f"open findings of severity error in the reports ({each})")


def _cycle_logged(agent: Agent, wait: float) -> None:
    """A daemon outlives a failed cycle: the error is logged and the next cycle retries."""
    try:
        _cycle(agent, wait)
    except InvsyncError as e:
        _log.error("cycle failed: %s", e)


def _cycle(agent: Agent, wait: float, *, exiting: bool = False) -> list[CycleResult]:
    """One cycle over every pairing; each pairing's report as written. What the cycle held is
    let go before the cycle collector, paused for it, runs again (agent.gc_pause); `exiting`:
    the process ends after it (--once), and the collector freezes what is left instead."""
    party = agent.config.party
    with collector_paused(exiting=exiting, keeping=not exiting):
        try:
            count = agent.collect()
            click.echo(f"{party}: collected {count} certificates")
            results = _pairings(agent, wait)
        except InvsyncError as e:
            agent.notifier.cycle_ended(e)  # never raises: a notification stops no cycle
            raise
        finally:  # a failed cycle too: a daemon lives on, or is killed
            agent.end_cycle()
        agent.notifier.cycle_ended(None)
        return results


def _pairings(agent: Agent, wait: float) -> list[CycleResult]:
    """Each pairing's part of the cycle. One that fails on its own (its push or report refused,
    or not verified) does not keep the next from running: with a pairing removed at the server
    before here, the others still go on. The first failure is raised once all have run, the
    others logged; a server that does not answer at all ends the cycle at once."""
    results: list[CycleResult] = []
    failed: list[InvsyncError] = []
    for pairing in agent.config.pairings.values():
        with log_context(pairing=pairing.name, peer=pairing.peer):
            try:
                results.append(_pairing_cycle(agent, pairing, wait))
            except InvsyncError as e:
                if _unanswered(e):
                    raise
                if failed:
                    _log.error("pairing %s failed too: %s", pairing.name, e)
                failed.append(e)
            finally:
                agent.end_pairing(pairing.name)
    if failed:
        raise failed[0]
    return results


def _unanswered(error: InvsyncError) -> bool:
    """A call the server never answered: every other pairing's would fail the same way."""
    return isinstance(error, TransportError) and not isinstance(error, Refused | NotFoundYet)


def _pairing_cycle(agent: Agent, pairing: PairingConfig, wait: float) -> CycleResult:
    party = agent.config.party
    outcome = _push(agent, pairing)
    click.echo(_push_line(party, pairing.name, outcome))
    with log_context(version=outcome.version):
        result = agent.settle(pairing, wait)
    roles = ", ".join(f"{r} {s.value}" for r, s in result.verification.roles.items())
    click.echo(f"{party}: report {result.report_path} ({roles})")
    return result


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
