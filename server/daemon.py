"""The exchange server process: mutual TLS, the Exchange service and the standard health service."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from invsync.agent.daemon.config_watch import CHANGED, ConfigWatch, is_stop, wait_for_event
from invsync.agent.daemon.signals import SignalWaiter
from invsync.agent.errors import ConfigError, InvsyncError
from invsync.agent.exchange.keepalive import server_options
from invsync.agent.exchange.keys import load_signing_key
from invsync.agent.store.lock import DaemonLock
from invsync.agent.telemetry.metrics import serve as serve_metrics
from invsync.server import metrics
from invsync.server.config import ServerConfig, load_server_config
from invsync.server.exchange import Exchange
from invsync.server.limits import Limiter
from invsync.server.live_config import LiveParts, changes, live_parts, restart_keys
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
    schedule: threading.Thread | None
    news: ReportNews
    service: ExchangeService
    config: ServerConfig  # as last applied
    live: LiveParts
    started: ServerConfig  # as started: what the keys a reload cannot apply hold

    def reload(self) -> None:
        """Read the configuration file again and apply what a running server can take
        (server.live_config): on SIGHUP, and when the file's bytes change. A file that does not
        load, or whose keys or CRL do not, is refused with a log line; the running
        configuration stays, all of it."""
        file = self.config.file
        try:
            new = load_server_config(file)
            parts = live_parts(new)
        except InvsyncError as e:
            log.error("reload of %s refused, the running configuration stays: %s", file, e)
            return
        self.apply(parts)
        log.info(
            "reloaded %s: %s; %d revoked client certificates (tls.client_crl)",
            file,
            changes(self.config, new),
            len(parts.revoked.serials),
        )
        waiting = restart_keys(self.started, new)
        if waiting:
            log.warning(
                "%s: %s changed; the running values stay until the server restarts",
                file,
                ", ".join(waiting),
            )
        self.config = new

    def apply(self, parts: LiveParts) -> None:
        """Calls started from here on see the new parties, pairings and keys; a call under
        way finishes under the ones it started with."""
        self.live = parts
        self.service.exchange.set_policy(parts.policy)
        self.service.identities = parts.identities
        self.service.revoked = parts.revoked
        self.limiter.count(parts.policy.parties)

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
        if self.schedule is not None:
            self.schedule.join()  # a scheduled report under way, too
        self.store.close()
        # Cancels the calls left; a handler still running after this finds the store closed.
        self.server.stop(None)
        self.limiter.stop()


def start(config: ServerConfig) -> RunningServer:
    """Start serving on `config.listen` (port 0 picks a free port); returns at once."""
    parts = live_parts(config)
    policy = parts.policy
    store = ServerStore(config.database)
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
    service = ExchangeService(exchange, parts.identities, limiter, parts.revoked)
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
    running = RunningServer(
        server, port, health_servicer, store, stop, limiter, worker, None, exchange.news,
        service, config, parts, config,
    )  # fmt: skip
    running.schedule = start_scheduler(
        reports, store, lambda: running.live.schedules, lambda: datetime.now(UTC), stop
    )
    return running


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """Mutual TLS, always: the client CA is mandatory and client certificates are required."""
    return grpc.ssl_server_credentials(
        [(_read(config.tls.key), _read(config.tls.cert))],
        root_certificates=_read(config.tls.client_ca),
        require_client_auth=True,
    )


def serve_forever(config: ServerConfig, watch: ConfigWatch) -> None:
    """Serve `config` until SIGTERM or SIGINT, reloading it on SIGHUP or when `watch` (made
    before `config` was loaded) sees its file change."""
    with DaemonLock(config.database):
        _serve(config, watch)


def _serve(config: ServerConfig, watch: ConfigWatch) -> None:
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
        while not is_stop(event := wait_for_event(waiter, watch, None)):
            if event == CHANGED:
                log.info("%s changed: reloading it", config.file)
            watch.mark()  # before the load (agent.daemon.config_watch)
            running.reload()
        log.info("stopping: draining in-flight calls for up to %.0f s", GRACE_SECONDS)
        running.stop()


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
