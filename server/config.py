"""The exchange server's configuration file (TOML). Documented key by key in docs/configuration.md.

[server]
name = "exchange"                # named in every receipt it signs
listen = "127.0.0.1:7443"
database = "server.db"
signing_key = "keys/server.key"  # signs receipts and reports
max_snapshot_bytes = 268435456   # bytes; a larger push is refused while it streams
max_clock_skew_seconds = 300
max_snapshot_validity_seconds = 2678400
max_version_step = 1048576       # largest step between a party's consecutive snapshot versions
report_as_of = ""                # empty: findings are evaluated now; an RFC 3339 time replays one
keepalive_seconds = 20           # ping a client connection silent this long
keepalive_timeout_seconds = 10   # and drop its connection if the ping is not answered by then
min_client_keepalive_seconds = 5  # clients may ping this often: at most any agent's keepalive
metrics_listen = ""              # e.g. "127.0.0.1:9464": Prometheus metrics; empty: off
max_concurrent_rpcs = 64         # calls beyond it are shed by gRPC with RESOURCE_EXHAUSTED
max_streams_per_party = 4        # open push streams one party may have at once
stream_idle_seconds = 30         # a push stream sending no chunk this long is cancelled
stream_min_bytes_per_second = 1024  # a slower push is cancelled past stream_idle_seconds
max_inflight_bytes = 1073741824  # bytes all pushes under way may hold; a push past it: server-busy
max_request_seconds = 600        # any call running this long is cancelled

[tls]
cert = "tls/server.crt"
key = "tls/server.key"
client_ca = "tls/ca.pem"         # required: clients must present a certificate it issued

[parties.secom]
tls_identity = "secom"           # Common Name of the party's TLS client certificate
signing_keys = ["keys/secom.pub"]

[pairings.secom-jprs]
root = "secom"
subordinate = "jprs"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from invsync.agent.errors import ConfigError
from invsync.agent.exchange.acceptance import DEFAULT_MAX_VERSION_STEP
from invsync.agent.exchange.keepalive import Keepalive, read_keepalive
from invsync.agent.telemetry.metrics import read_listen
from invsync.agent.tomlconf import Table

SCHEDULES = ("daily", "weekly", "monthly", "never")
SPARE_WORKERS = 4
# Four pushes of the default largest snapshot (256 MiB) at once.
DEFAULT_MAX_INFLIGHT_BYTES = 1 << 30


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path
    client_crl: Path | None = None  # the federation CA's CRL: revoked clients are refused


@dataclass(frozen=True)
class PartyConfig:
    name: str
    tls_identity: str
    signing_keys: tuple[Path, ...]


@dataclass(frozen=True)
class PairingConfig:
    name: str
    root: str
    subordinate: str
    report_schedule: str = "daily"  # or "weekly", "monthly", "never"


@dataclass(frozen=True)
class Limits:
    """What one party, or a flood of calls, may hold of the server (issue 12)."""

    max_concurrent_rpcs: int = 64
    max_streams_per_party: int = 4
    stream_idle_seconds: int = 30
    stream_min_bytes_per_second: int = 1024
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES
    max_request_seconds: int = 600

    max_snapshot_bytes: int = 256 * 1024 * 1024  # the server's, for the share below

    @property
    def party_share(self) -> int:
        """The most one party's pushes may hold of `max_inflight_bytes`: what leaves room for
        another party's largest push, or one largest push where the budget holds no two."""
        return max(self.max_snapshot_bytes, self.max_inflight_bytes - self.max_snapshot_bytes)

    @property
    def workers(self) -> int:
        """Worker threads: more than the calls gRPC lets in, so none ever waits for one."""
        return self.max_concurrent_rpcs + SPARE_WORKERS


@dataclass(frozen=True)
class ServerConfig:
    file: Path
    name: str
    listen: str
    database: Path
    signing_key: Path
    max_snapshot_bytes: int
    max_clock_skew_seconds: int
    max_snapshot_validity_seconds: int
    report_as_of: datetime | None
    tls: TlsConfig
    parties: dict[str, PartyConfig]
    pairings: dict[str, PairingConfig]
    metrics_listen: str = ""
    keepalive: Keepalive = field(default_factory=Keepalive)
    min_client_keepalive_seconds: int = 5
    max_version_step: int = DEFAULT_MAX_VERSION_STEP
    limits: Limits = field(default_factory=Limits)


_SERVER_KEYS = (
    "name",
    "listen",
    "database",
    "signing_key",
    "max_snapshot_bytes",
    "max_clock_skew_seconds",
    "max_snapshot_validity_seconds",
    "max_version_step",
    "report_as_of",
    "metrics_listen",
    "keepalive_seconds",
    "keepalive_timeout_seconds",
    "min_client_keepalive_seconds",
    "max_concurrent_rpcs",
    "max_streams_per_party",
    "stream_idle_seconds",
    "max_request_seconds",
    "stream_min_bytes_per_second",
    "max_inflight_bytes",
)


def load_server_config(file: Path) -> ServerConfig:
    root = Table.load(file)
    root.only(["server", "tls", "parties", "pairings"])
    server = root.table("server")
    server.only(_SERVER_KEYS)
    parties = {name: _party(name, t) for name, t in root.tables("parties").items()}
    _unique_identities(root, parties)
    pairings = {name: _pairing(name, t, parties) for name, t in root.tables("pairings").items()}
    return ServerConfig(
        file=file,
        name=server.text("name", "exchange"),
        listen=server.text("listen"),
        database=server.path("database"),
        signing_key=server.existing_path("signing_key"),
        max_snapshot_bytes=_max_snapshot_bytes(server),
        max_clock_skew_seconds=server.integer("max_clock_skew_seconds", 300, minimum=0),
        max_snapshot_validity_seconds=server.integer("max_snapshot_validity_seconds", 31 * 86400),
        report_as_of=_as_of(server),
        tls=_tls(root),
        parties=parties,
        pairings=pairings,
        metrics_listen=read_listen(server),
        keepalive=read_keepalive(server),
        min_client_keepalive_seconds=server.integer("min_client_keepalive_seconds", 5),
        max_version_step=server.integer("max_version_step", DEFAULT_MAX_VERSION_STEP),
        limits=_limits(server),
    )


def _max_snapshot_bytes(server: Table) -> int:
    return server.integer("max_snapshot_bytes", 256 * 1024 * 1024)


def _limits(server: Table) -> Limits:
    d = Limits()
    largest = _max_snapshot_bytes(server)
    return Limits(
        max_concurrent_rpcs=server.integer("max_concurrent_rpcs", d.max_concurrent_rpcs),
        max_streams_per_party=server.integer("max_streams_per_party", d.max_streams_per_party),
        stream_idle_seconds=server.integer("stream_idle_seconds", d.stream_idle_seconds),
        stream_min_bytes_per_second=server.integer(
            "stream_min_bytes_per_second", d.stream_min_bytes_per_second, minimum=0
        ),
        max_inflight_bytes=_inflight_budget(server, largest),
        max_snapshot_bytes=largest,
        max_request_seconds=server.integer("max_request_seconds", d.max_request_seconds),
    )


def _inflight_budget(server: Table, largest: int) -> int:
    # A budget below the largest snapshot would refuse every push of that size, so the default
    # grows with max_snapshot_bytes and a smaller explicit value is an error.
    budget = server.integer("max_inflight_bytes", max(Limits().max_inflight_bytes, largest))
    if budget < largest:
        raise server.fail(
            "max_inflight_bytes",
            f"must be at least server.max_snapshot_bytes ({largest}), got {budget}",
        )
    return budget


def _tls(root: Table) -> TlsConfig:
    # gRPC silently accepts anonymous clients unless a client CA and require_client_auth are set,
    # so a missing client_ca is an error, never a fallback to server-only TLS.
    table = root.table("tls")
    table.only(["cert", "key", "client_ca", "client_crl"])
    return TlsConfig(
        cert=table.existing_path("cert"),
        key=table.existing_path("key"),
        client_ca=table.existing_path("client_ca"),
        client_crl=table.existing_path("client_crl") if "client_crl" in table.names() else None,
    )


def _party(name: str, table: Table) -> PartyConfig:
    table.only(["tls_identity", "signing_keys"])
    keys = tuple(table.existing_paths("signing_keys"))
    if not keys:
        raise table.fail("signing_keys", "at least one key is required")
    return PartyConfig(name, table.text("tls_identity"), keys)


def _unique_identities(root: Table, parties: dict[str, PartyConfig]) -> None:
    # The daemon maps a client certificate's Common Name to one party: a shared identity would
    # let one party's certificate speak as the other.
    seen: dict[str, str] = {}
    for name, party in parties.items():
        if party.tls_identity in seen:
            raise root.fail(
                f"parties.{name}.tls_identity",
                f"{party.tls_identity!r} is already the tls_identity of "
                f"parties.{seen[party.tls_identity]}",
            )
        seen[party.tls_identity] = name


def _pairing(name: str, table: Table, parties: dict[str, PartyConfig]) -> PairingConfig:
    table.only(["root", "subordinate", "report_schedule"])
    schedule = table.text("report_schedule", "daily")
    if schedule not in SCHEDULES:
        raise table.fail(
            "report_schedule", f"expected one of {', '.join(SCHEDULES)}, got {schedule!r}"
        )
    pairing = PairingConfig(name, table.text("root"), table.text("subordinate"), schedule)
    for key in ("root", "subordinate"):
        if getattr(pairing, key) not in parties:
            raise table.fail(key, f"no [parties.{getattr(pairing, key)}] table")
    if pairing.root == pairing.subordinate:
        raise table.fail("subordinate", "must differ from root")
    return pairing


def _as_of(server: Table) -> datetime | None:
    text = server.text("report_as_of", "")
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as e:
        raise server.fail("report_as_of", f"not an RFC 3339 time: {text!r}") from e
    if value.tzinfo is None:
        raise server.fail("report_as_of", f"needs a timezone, e.g. {text}Z")
    return value


__all__ = ["ConfigError", "ServerConfig", "load_server_config"]
