"""The agent's configuration file (TOML). Every key is documented in docs/configuration.md.

[agent]
party = "secom"                 # this party's id
database = "secom.db"           # SQLite state, created on first run
signing_key = "keys/secom.key"  # snapshot and report signing key (PEM, PKCS#8)
sources = ["issuance.jsonl"]    # inventory sources, as for `invsync inventory import`
report_dir = "reports"          # where signed reports and their Markdown are written
snapshot_validity_seconds = 86400
snapshot_refresh_seconds = 43200  # push an unchanged inventory again once its snapshot is this old
rpc_timeout_seconds = 10
max_source_bytes = 268435456  # optional: refuse a source file larger than this (256 MiB)
max_snapshot_bytes = 268435456  # optional: the largest peer snapshot fetched (the server's)
keepalive_seconds = 20          # ping a server silent this long; see agent.exchange.keepalive
keepalive_timeout_seconds = 10  # and give the connection up if the ping is not answered by then
metrics_listen = ""             # e.g. "127.0.0.1:9465": Prometheus metrics; empty: off
next_signing_key = "keys/secom-2027.key"  # optional: announce and switch to this key

[server]
address = "localhost:7443"
ca = "tls/ca.pem"               # trusts the exchange server's TLS certificate
cert = "tls/secom.crt"          # this party's TLS client certificate
key = "tls/secom.key"
signing_keys = ["keys/server.pub"]  # the server's receipt and report signing key(s)
name = "exchange.example.net"   # optional: the server's configured name, its log's origin

[peers.jprs]
signing_keys = ["keys/jprs.pub"]

[pairings.secom-jprs]
role = "root"                   # or "subordinate"
peer = "jprs"
issuer_certificates = ["secom_roots.pem"]  # the root CA certificates whose keys define scope
subject_organizations = ["Japan Registry Services Co., Ltd."]  # root side only

[retry]                         # a call that finds no server; every key has a default
attempts = 5                    # tries per call, the first included
initial_backoff_seconds = 0.5   # the first wait is drawn from [0, this], doubling each time
max_backoff_seconds = 8         # up to this
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.config.inventory import (
    AuditScopeSource,
    acknowledgements,
    attribution,
    audit_scope_sources,
    profiles,
)
from invsync.agent.config.notify import Notify, read_notify
from invsync.agent.errors import SourceError
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.keepalive import Keepalive, read_keepalive
from invsync.agent.inventory.attribution import Attribution, with_pairings
from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.agent.sources.detect import KINDS
from invsync.agent.sources.reading import DEFAULT_MAX_SOURCE_BYTES
from invsync.agent.telemetry.metrics import read_listen
from invsync.agent.tomlconf import Table

SPKI = PublicFormat.SubjectPublicKeyInfo


# The largest peer snapshot (and log answer) an agent takes: the server's own default, so that
# what one party may push the other may fetch; raise both together.
DEFAULT_MAX_SNAPSHOT_BYTES = 256 << 20


@dataclass(frozen=True)
class PairingConfig:
    name: str
    role: str
    peer: str
    issuer_certificates: tuple[Path, ...]
    subject_organizations: tuple[str, ...]

    def issuer_spkis(self) -> list[bytes]:
        """The SubjectPublicKeyInfo (DER) of every issuer certificate: the pairing's scope."""
        spkis = []
        for path in self.issuer_certificates:
            try:
                certs = x509.load_pem_x509_certificates(path.read_bytes())
            except (OSError, ValueError) as e:
                raise SourceError(f"{path}: issuer certificates cannot be read: {e}") from e
            spkis += [c.public_key().public_bytes(Encoding.DER, SPKI) for c in certs]
        return spkis


@dataclass(frozen=True)
class AgentConfig:
    file: Path
    party: str
    database: Path
    signing_key: Path
    sources: tuple[str, ...]
    report_dir: Path
    snapshot_validity_seconds: int
    snapshot_refresh_seconds: int
    rpc_timeout_seconds: int
    server: ServerEndpoint
    peers: dict[str, tuple[Path, ...]]
    pairings: dict[str, PairingConfig]
    audit_scope: tuple[AuditScopeSource, ...] = ()
    attribution: Attribution = field(default_factory=Attribution)
    profiles: tuple[OperatorProfile, ...] = ()
    acknowledgements: tuple[Acknowledgement, ...] = ()
    metrics_listen: str = ""
    next_signing_key: Path | None = None  # a key being rotated to (agent.exchange.keyring)
    keepalive: Keepalive = field(default_factory=Keepalive)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_source_bytes: int = DEFAULT_MAX_SOURCE_BYTES  # one source file's size cap
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES  # the largest peer snapshot fetched
    notify: Notify = field(default_factory=Notify)  # [[notify]] channels (agent.notify)

    def ca_spkis(self) -> list[bytes]:
        """Every pairing's root CA keys: CT entries they signed belong in the inventory."""
        return [spki for pairing in self.pairings.values() for spki in pairing.issuer_spkis()]


def exchange_client(
    config: AgentConfig, *, timeout: float | None = None, retry: RetryPolicy | None = None
) -> ExchangeClient:
    """A client of the configured server with the agent's limits (timeout, retries, keepalive,
    largest snapshot); a probe may ask for a shorter timeout and its own retries."""
    return ExchangeClient(
        config.server,
        timeout=config.rpc_timeout_seconds if timeout is None else timeout,
        retry=retry or config.retry,
        keepalive=config.keepalive,
        max_snapshot_bytes=config.max_snapshot_bytes,
    )


def load_agent_config(file: Path) -> AgentConfig:
    root = Table.load(file)
    root.only(
        [
            "agent",
            "server",
            "peers",
            "pairings",
            "audit_scope",
            "attribution",
            "profiles",
            "acknowledgements",
            "retry",
            "notify",
            "notify_settings",
        ]
    )
    agent = root.table("agent")
    agent.only(_AGENT_KEYS)
    peers = {name: _peer(table) for name, table in root.tables("peers").items()}
    pairings = {name: _pairing(name, t) for name, t in root.tables("pairings").items()}
    for name, pairing in pairings.items():
        if pairing.peer not in peers:
            raise root.fail(f"pairings.{name}.peer", f"no [peers.{pairing.peer}] table")
    _one_operator_per_organization(root, pairings)
    validity = agent.integer("snapshot_validity_seconds", 86400)
    return AgentConfig(
        file=file,
        party=agent.text("party"),
        database=agent.path("database"),
        signing_key=agent.existing_path("signing_key"),
        sources=tuple(_sources(agent)),
        report_dir=agent.path("report_dir"),
        snapshot_validity_seconds=validity,
        snapshot_refresh_seconds=_refresh(agent, validity),
        rpc_timeout_seconds=agent.integer("rpc_timeout_seconds", 10),
        server=_server(root.table("server")),
        peers=peers,
        pairings=pairings,
        audit_scope=audit_scope_sources(root),
        attribution=with_pairings(attribution(root), _root_pairings(pairings)),
        profiles=profiles(root),
        acknowledgements=acknowledgements(root),
        metrics_listen=read_listen(agent),
        next_signing_key=_next_signing_key(agent),
        keepalive=read_keepalive(agent),
        retry=_retry(root),
        max_source_bytes=agent.integer("max_source_bytes", DEFAULT_MAX_SOURCE_BYTES),
        max_snapshot_bytes=agent.integer("max_snapshot_bytes", DEFAULT_MAX_SNAPSHOT_BYTES),
        notify=read_notify(root),
    )


_AGENT_KEYS = (
    "party",
    "database",
    "signing_key",
    "sources",
    "report_dir",
    "snapshot_validity_seconds",
    "snapshot_refresh_seconds",
    "rpc_timeout_seconds",
    "keepalive_seconds",
    "keepalive_timeout_seconds",
    "metrics_listen",
    "next_signing_key",
    "max_source_bytes",
    "max_snapshot_bytes",
)


def _next_signing_key(agent: Table) -> Path | None:
    if agent.opt_str("next_signing_key") is None:
        return None
    path = agent.existing_path("next_signing_key")
    if path == agent.path("signing_key"):
        raise agent.fail("next_signing_key", "is the signing_key itself; name the new key")
    return path


def _refresh(agent: Table, validity: int) -> int:
    """The age at which an unchanged snapshot is pushed again; before its expiry, or it lapses."""
    refresh = agent.integer("snapshot_refresh_seconds", validity // 2, minimum=0)
    if refresh >= validity:
        raise agent.fail(
            "snapshot_refresh_seconds",
            f"must be less than agent.snapshot_validity_seconds ({validity}), got {refresh}",
        )
    return refresh


def _retry(root: Table) -> RetryPolicy:
    """`[retry]`: how a call that finds no server is retried. Every key has a default."""
    default = RetryPolicy()
    table = root.optional_table("retry")
    if table is None:
        return default
    table.only(["attempts", "initial_backoff_seconds", "max_backoff_seconds"])
    attempts = table.integer("attempts", default.retries + 1)
    initial = table.number("initial_backoff_seconds", default.base)
    cap = table.number("max_backoff_seconds", default.cap)
    if cap < initial:  # every wait would be capped below the first step: surely a slip
        raise table.fail(
            "max_backoff_seconds",
            f"must be at least initial_backoff_seconds ({initial:g}), got {cap:g}",
        )
    return RetryPolicy(base=initial, factor=default.factor, cap=cap, retries=attempts - 1)


def _sources(agent: Table) -> list[str]:
    # A source may carry a KIND: prefix; only the path part is relative to the config file,
    # and a URL (a CT log's) is no path: resolved, "https://ct.example/log" became
    # "DIR/https:/ct.example/log", and the daemon could read no CT log at all.
    specs = []
    for spec in agent.texts("sources"):
        kind, sep, rest = spec.partition(":")
        if sep and kind in KINDS:
            specs.append(spec if _is_url(rest) else f"{kind}:{agent.resolve(rest)}")
        else:
            specs.append(spec if _is_url(spec) else str(agent.resolve(spec)))
    return specs


def _is_url(spec: str) -> bool:
    return spec.startswith(("https://", "http://"))


def _server(table: Table) -> ServerEndpoint:
    table.only(["address", "ca", "cert", "key", "signing_keys", "name"])
    name = table.text("name", "")
    if name != name.strip() or any(c.isspace() for c in name) or "+" in name:
        raise table.fail("name", f"{name!r} is no log origin (no spaces, no '+')")
    return ServerEndpoint(
        address=table.text("address"),
        ca=table.existing_path("ca"),
        cert=table.existing_path("cert"),
        key=table.existing_path("key"),
        signing_keys=tuple(table.existing_paths("signing_keys")),
        name=name,
    )


def _one_operator_per_organization(root: Table, pairings: dict[str, PairingConfig]) -> None:
    """An organization named by two root pairings with different peers would attribute its
    certificates to whichever comes first, and drop them from the other's scope unseen."""
    seen: dict[str, PairingConfig] = {}
    for name, pairing in pairings.items():
        if pairing.role != ROOT:
            continue
        for organization in pairing.subject_organizations:
            other = seen.setdefault(organization, pairing)
            if other.peer != pairing.peer:
                raise root.fail(
                    f"pairings.{name}.subject_organizations",
                    f"{organization!r} is also in pairings.{other.name}.subject_organizations, "
                    f"whose peer is {other.peer!r}: an organization's certificates have one "
                    "operator",
                )


def _root_pairings(pairings: dict[str, PairingConfig]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Each root pairing's name, peer and subject organizations, for the one attribution."""
    return [(p.name, p.peer, p.subject_organizations) for p in pairings.values() if p.role == ROOT]


def _peer(table: Table) -> tuple[Path, ...]:
    table.only(["signing_keys"])
    return tuple(table.existing_paths("signing_keys"))


def _pairing(name: str, table: Table) -> PairingConfig:
    table.only(["role", "peer", "issuer_certificates", "subject_organizations"])
    role = table.text("role")
    if role not in (ROOT, SUBORDINATE):
        raise table.fail("role", f"expected 'root' or 'subordinate', got {role!r}")
    return PairingConfig(
        name=name,
        role=role,
        peer=table.text("peer"),
        issuer_certificates=tuple(table.existing_paths("issuer_certificates")),
        subject_organizations=tuple(table.texts("subject_organizations", [])),
    )
