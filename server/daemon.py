"""The exchange server process: mutual TLS, the Exchange service and the standard health service."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from invsync.agent.daemon.signals import SignalWaiter
from invsync.agent.errors import ConfigError, InvsyncError
from invsync.agent.exchange.acceptance import AcceptancePolicy, PairingPolicy, PartyPolicy
from invsync.agent.exchange.keepalive import server_options
from invsync.agent.exchange.keys import load_signing_key, load_verify_key
from invsync.agent.store.lock import DaemonLock
from invsync.agent.telemetry.metrics import serve as serve_metrics
from invsync.server import metrics
from invsync.server.client_crl import Revoked, load_revoked
from invsync.server.config import ServerConfig, load_server_config
from invsync.server.exchange import Exchange
from invsync.server.limits import Limiter
from invsync.server.reconciling import ReportMaker
from invsync.server.report_news import ReportNews
from invsync.server.report_worker import ReportWorker
from invsync.server.schedule import start_scheduler
from invsync.server.service import ExchangeService
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2_grpc as pb_grpc

SERVICE_NAME = "invsync.v1.Exchange"
GRACE_SECONDS = 5.0
log = logging.getLogger("invsync.server")


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    store: ServerStore
    schedule_stop: threading.Event
    limiter: Limiter
    reports: ReportWorker
    schedule: threading.Thread
    news: ReportNews
    service: ExchangeService
    config: ServerConfig

    def reload(self) -> None:
        """SIGHUP: read the configuration file again and apply its `tls.client_crl`, so that a
        revocation takes effect without a restart. The new file is checked whole first; one
        that does not load, or a CRL that does not verify, is refused with a log line and the
        running configuration stays. Other changes take effect at the next start (logged)."""
        file = self.config.file
        try:
            new = load_server_config(file)
            revoked = revoked_of(new)
        except InvsyncError as e:
            log.error("reload refused, the running configuration stays: %s", e)
            return
        self.service.revoked = revoked
        log.info(
            "reloaded %s: %d revoked client certificates (tls.client_crl)",
            file,
            len(revoked.serials),
        )
        if _but_crl(new) != _but_crl(self.config):
            log.warning(
                "%s: changes other than tls.client_crl take effect when the server restarts",
                file,
            )

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """Report NOT_SERVING, let in-flight calls finish within `grace`, then close the store
        and cancel the calls still running, in that order.

        The order matters: to its handler, a call gRPC cancels may look complete (the request
        iterator can simply end), so a push whose trailer was in would be committed after the
        grace period, its client told CANCELLED. Closed under its lock, the store lets a commit
        already under way finish and makes every later one fail before it writes anything.
        """
        self.health.enter_graceful_shutdown()
        self.schedule_stop.set()
        self.news.close()  # calls waiting for a report are answered now, not at their deadline
        # New calls are refused from here on. gRPC would cancel the calls in flight at the end
        # of the grace it is given: given more than ours, the stop(None) below comes first.
        drained = self.server.stop(grace + 60.0)
        if not drained.wait(grace):
            log.info("grace period over: cancelling the calls still in flight")
        self.reports.stop()  # the reports asked for are made before the store closes
        self.schedule.join()  # a scheduled report under way, too
        self.store.close()
        # Cancels the calls left; a handler still running after this finds the store closed.
        self.server.stop(None)
        self.limiter.stop()


def policy_of(config: ServerConfig) -> AcceptancePolicy:
    parties = {
        name: PartyPolicy(name, {k.keyid: k for k in map(load_verify_key, p.signing_keys)})
        for name, p in config.parties.items()
    }
    pairings = {
        name: PairingPolicy(name, p.root, p.subordinate) for name, p in config.pairings.items()
    }
    return AcceptancePolicy(
        parties=parties,
        pairings=pairings,
        max_clock_skew=_seconds(config.max_clock_skew_seconds),
        max_validity=_seconds(config.max_snapshot_validity_seconds),
        max_version_step=config.max_version_step,
    )


def revoked_of(config: ServerConfig) -> Revoked:
    """The revoked client certificates of `tls.client_crl`; none without one."""
    crl = config.tls.client_crl
    if crl is None:
        return Revoked()
    return load_revoked(crl, config.tls.client_ca, f"{config.file}: tls.client_crl")


def start(config: ServerConfig) -> RunningServer:
    """Start serving on `config.listen` (port 0 picks a free port); returns at once."""
    store = ServerStore(config.database)
    policy = policy_of(config)
    key = load_signing_key(config.signing_key)
    reports = ReportMaker(
        server_name=config.name,
        store=store,
        policy=policy,
        signing_key=key,
        as_of=config.report_as_of,
    )
    worker = ReportWorker(reports.make_if_stale)
    exchange = Exchange(
        name=config.name,
        store=store,
        policy=policy,
        signing_key=key,
        reports=reports,
        max_snapshot_bytes=config.max_snapshot_bytes,
        reconcile=worker.request,
    )
    identities = {p.tls_identity: name for name, p in config.parties.items()}
    options = server_options(config.keepalive, config.min_client_keepalive_seconds)
    limits = config.limits
    # More workers than calls let in: gRPC sheds the excess with RESOURCE_EXHAUSTED instead of
    # queueing it, and every admitted call (a health check, the other party's push) has a worker.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.workers),
        options=options,
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
        # Answers gzip-compressed (every gRPC client accepts it): report bodies and log entries
        # are JSON, about a seventh of their size compressed; CA certificates' DER about 1/1.6.
        # Requests stay as sent: a push is mostly DER, and the agent's CPU is the dearer.
        compression=grpc.Compression.Gzip,
    )
    limiter = Limiter(limits, config.parties)
    service = ExchangeService(exchange, identities, limiter, revoked_of(config))
    pb_grpc.add_ExchangeServicer_to_server(service, server)
    health_servicer = _add_health(server)
    port = server.add_secure_port(config.listen, server_credentials(config))
    if port == 0:
        raise ConfigError(f"{config.file}: server.listen: cannot listen on {config.listen}")
    server.start()
    limiter.start()
    # The pairings whose latest report is not on their latest snapshots: a report a stop cut
    # short is made now, and an unchanged pairing gets no new one.
    worker.start([pairing for pairing in config.pairings if reports.stale(pairing)])
    stop = threading.Event()
    schedules = {name: p.report_schedule for name, p in config.pairings.items()}
    schedule = start_scheduler(reports, store, schedules, lambda: datetime.now(UTC), stop)
    return RunningServer(
        server, port, health_servicer, store, stop, limiter, worker, schedule, exchange.news,
        service, config,
    )  # fmt: skip


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """Mutual TLS, always: the client CA is mandatory and client certificates are required."""
    return grpc.ssl_server_credentials(
        [(_read(config.tls.key), _read(config.tls.cert))],
        root_certificates=_read(config.tls.client_ca),
        require_client_auth=True,
    )


def serve_forever(config: ServerConfig) -> None:
    with DaemonLock(config.database):
        _serve(config)


def _serve(config: ServerConfig) -> None:
    # Handlers first (see SignalWaiter): a stop sent as soon as the port is announced must not
    # meet the default action, which kills the process without draining; a second one during
    # the drain must not either, so the drain runs inside the block too.
    with SignalWaiter((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)) as waiter:
        # Metrics first: a metrics port that cannot be bound stops the daemon before it serves.
        where = f"{config.file}: server.metrics_listen"
        serve_metrics(config.metrics_listen, where, metrics.REGISTRY)
        running = start(config)
        host = config.listen.rsplit(":", 1)[0]
        print(f"invsync server {config.name} listening on {host}:{running.port}", flush=True)
        while waiter.wait() == {signal.SIGHUP}:
            running.reload()
        log.info("stopping: draining in-flight calls for up to %.0f s", GRACE_SECONDS)
        running.stop()


def _but_crl(config: ServerConfig) -> ServerConfig:
    return replace(config, tls=replace(config.tls, client_crl=None))


def _add_health(server: grpc.Server) -> health.HealthServicer:
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ("", SERVICE_NAME):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return servicer


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e


def _seconds(n: int) -> timedelta:
    return timedelta(seconds=n)
