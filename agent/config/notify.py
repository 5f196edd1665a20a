"""The notification part of the agent's configuration: `[[notify]]` channels, `[notify_settings]`.

[[notify]]                        # one table per channel
name = "mail-officers"
kind = "smtp"                     # or "command", "webhook"
severities = ["error"]            # findings of these severities (the default)
codes = []                        # these finding codes only; empty or absent: every code
events = ["finding-opened", "resolved"]  # these kinds only; absent: every kind
host = "smtp.example.net"
port = 587
security = "starttls"             # or "tls"; "none" only for a loopback host
from = "invsync@example.net"
to = ["compliance@example.net"]
username = "invsync"
password_file = "secrets/smtp-password"  # or password_env = "INVSYNC_SMTP_PASSWORD"

[notify_settings]
failing_cycles = 3                # one cycle-failing event after this many failed cycles in a row
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from invsync.agent.errors import ConfigError
from invsync.agent.model.findings import CATALOGUE, Severity
from invsync.agent.tomlconf import Table

# What an event is about; `test` is sent by `invsync notify test` alone, on every channel.
FINDING_KINDS = ("finding-opened", "severity-changed", "overdue", "resolved")
EVENT_KINDS = (*FINDING_KINDS, "cycle-failing", "test")
CHANNEL_KINDS = ("command", "smtp", "webhook")
SECURITIES = ("starttls", "tls", "none")


@dataclass(frozen=True)
class Secret:
    """Where a password or key is read when it is used: a file (its first line) or a variable."""

    key_path: str  # `FILE: notify[0].password_file`, for errors
    file: Path | None = None
    env: str | None = None


@dataclass(frozen=True)
class Wants:
    """Which events a channel wants. Severities and codes filter finding events only."""

    severities: frozenset[str] = frozenset({Severity.ERROR.value})
    codes: frozenset[str] = frozenset()  # empty: every code
    events: frozenset[str] = frozenset(EVENT_KINDS)


@dataclass(frozen=True)
class CommandChannel:
    name: str
    wants: Wants
    argv: tuple[str, ...]
    hidden_env: frozenset[str] = frozenset()  # the other channels' secret variables: not its


@dataclass(frozen=True)
class SmtpChannel:
    name: str
    wants: Wants
    host: str
    port: int
    security: str
    sender: str
    to: tuple[str, ...]
    username: str | None = None
    password: Secret | None = None
    ca: Path | None = None


@dataclass(frozen=True)
class WebhookChannel:
    name: str
    wants: Wants
    url: str  # its path and query often hold a token: shown as `shown_url` only
    secret: Secret
    ca: Path | None = None

    @property
    def shown_url(self) -> str:
        return shown_url(self.url)


def shown_url(url: str) -> str:
    """`url` as logs, errors and `invsync status` show it: its scheme, host and port, with
    "/…" for a path or query that may hold a token (a Slack or Teams webhook's)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # a "[" with no "]"
        return "…"
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ":…"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    rest = "/…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{rest}"


Channel = CommandChannel | SmtpChannel | WebhookChannel


@dataclass(frozen=True)
class NotifySettings:
    failing_cycles: int = 3  # failed cycles in a row that make one cycle-failing event
    initial_backoff_seconds: float = 60.0  # a failed send is tried again after this, doubling
    max_backoff_seconds: float = 3600.0  # up to this
    timeout_seconds: float = 10.0  # one send's limit: a cycle never waits long on a channel


@dataclass(frozen=True)
class Notify:
    channels: tuple[Channel, ...] = ()
    settings: NotifySettings = field(default_factory=NotifySettings)


def read_notify(root: Table) -> Notify:
    channels = tuple(_entry(table) for table in root.array("notify"))
    names = [c.name for c in channels]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise root.fail(f"notify[{i}].name", f"{name!r} names an earlier entry too")
    hidden = frozenset(_secret_variables(channels))
    channels = tuple(
        replace(c, hidden_env=hidden) if isinstance(c, CommandChannel) else c for c in channels
    )
    return Notify(channels, _settings(root.optional_table("notify_settings")))


def _secret_variables(channels: tuple[Channel, ...]) -> Iterator[str]:
    for channel in channels:
        secret = channel.password if isinstance(channel, SmtpChannel) else None
        secret = channel.secret if isinstance(channel, WebhookChannel) else secret
        if secret is not None and secret.env is not None:
            yield secret.env


def _settings(table: Table | None) -> NotifySettings:
    default = NotifySettings()
    if table is None:
        return default
    table.only(_SETTINGS_KEYS)
    initial = table.number("initial_backoff_seconds", default.initial_backoff_seconds)
    cap = table.number("max_backoff_seconds", default.max_backoff_seconds)
    if cap < initial:
        raise table.fail(
            "max_backoff_seconds", f"must be at least initial_backoff_seconds ({initial:g})"
        )
    return NotifySettings(
        failing_cycles=table.integer("failing_cycles", default.failing_cycles),
        initial_backoff_seconds=initial,
        max_backoff_seconds=cap,
        timeout_seconds=table.number("timeout_seconds", default.timeout_seconds),
    )


_COMMON = ("name", "kind", "severities", "codes", "events")
_COMMAND_KEYS = (*_COMMON, "command")
_SMTP_KEYS = (
    *_COMMON,
    *("host", "port", "security", "from", "to", "username", "password_file", "password_env"),
    "ca",
)
_WEBHOOK_KEYS = (*_COMMON, "url", "secret_file", "secret_env", "ca")
_SETTINGS_KEYS = (
    "failing_cycles",
    "initial_backoff_seconds",
    "max_backoff_seconds",
    "timeout_seconds",
)


def _entry(table: Table) -> Channel:
    name = table.text("name")
    try:
        return _channel(name, table)
    except ConfigError as e:
        raise ConfigError(f"{e} (notify entry {name!r})") from e


def _channel(name: str, table: Table) -> Channel:
    if not name.strip() or any(c.isspace() or not c.isprintable() for c in name):
        raise table.fail("name", f"{name!r} is no channel name (printable, no spaces)")
    kind = table.text("kind")
    if kind not in CHANNEL_KINDS:
        raise table.fail("kind", f"expected one of {', '.join(CHANNEL_KINDS)}, got {kind!r}")
    if kind == "command":
        table.only(_COMMAND_KEYS)
        return _command(name, _wants(table), table)
    if kind == "smtp":
        table.only(_SMTP_KEYS)
        return _smtp(name, _wants(table), table)
    table.only(_WEBHOOK_KEYS)
    return _webhook(name, _wants(table), table)


def _wants(table: Table) -> Wants:
    severities = table.texts("severities", [Severity.ERROR.value])
    _only_from(table, "severities", severities, [s.value for s in Severity])
    codes = table.texts("codes", [])
    _only_from(table, "codes", codes, list(CATALOGUE))
    events = table.texts("events", list(EVENT_KINDS))
    _only_from(table, "events", events, list(EVENT_KINDS))
    if not severities or not events:
        raise table.fail("severities" if not severities else "events", "must name at least one")
    if set(events) == {"test"}:
        raise table.fail("events", "'test' alone: the daemon would send nothing on this channel")
    return Wants(frozenset(severities), frozenset(codes), frozenset(events))


def _only_from(table: Table, key: str, values: list[str], allowed: list[str]) -> None:
    for i, value in enumerate(values):
        if value not in allowed:
            shown = ", ".join(allowed) if len(allowed) < 10 else "see `invsync rules`"
            raise table.fail(f"{key}[{i}]", f"unknown value {value!r} ({shown})")


def _command(name: str, wants: Wants, table: Table) -> CommandChannel:
    argv = table.texts("command")
    if not argv or not argv[0]:
        raise table.fail("command", 'needs a program to run, such as ["/usr/local/bin/page"]')
    for i, arg in enumerate(argv):
        if "\0" in arg:
            raise table.fail(f"command[{i}]", "holds a NUL character")
    first = table.resolve(argv[0]) if "/" in argv[0] else None
    return CommandChannel(name, wants, (str(first) if first else argv[0], *argv[1:]))


def _smtp(name: str, wants: Wants, table: Table) -> SmtpChannel:
    host = _host(table, "host", table.text("host"))
    security = table.text("security", "starttls")
    if security not in SECURITIES:
        raise table.fail("security", f"expected one of {', '.join(SECURITIES)}, got {security!r}")
    if security == "none" and not _loopback(host):
        raise table.fail(
            "security", f"'none' sends in clear text: only for a loopback host, not {host!r}"
        )
    port = table.integer("port", 465 if security == "tls" else 587)
    if port > 65535:
        raise table.fail("port", f"must be at most 65535, got {port}")
    to = tuple(table.texts("to"))
    if not to:
        raise table.fail("to", "needs at least one address")
    for i, address in enumerate((table.text("from"), *to)):
        if "@" not in address or any(c.isspace() or c in "<>,\r\n" for c in address):
            raise table.fail("from" if i == 0 else f"to[{i - 1}]", f"{address!r} is no address")
    password = _secret(table, "password")
    username = table.opt_str("username")
    if (username is None) != (password is None):
        raise table.fail("username", "username and a password_file or password_env go together")
    return SmtpChannel(
        name, wants, host, port, security, table.text("from"), to, username, password, _ca(table)
    )


def _webhook(name: str, wants: Wants, table: Table) -> WebhookChannel:
    url = table.text("url")
    shown = shown_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise table.fail("url", f"is no URL: {e} ({shown!r})") from e
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise table.fail("url", f"expected an https:// URL, got {shown!r}")
    _host(table, "url", parts.hostname)
    if parts.username is not None or parts.password is not None:
        raise table.fail("url", "holds a user name or password: the secret signs the events")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise table.fail("url", f"its port is no number from 1 to 65535 ({shown!r})")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise table.fail(
            "url", f"http:// sends in clear text: only for a loopback host, not {shown!r}"
        )
    secret = _secret(table, "secret")
    if secret is None:
        raise table.fail("secret_file", "missing: a webhook signs every event (or secret_env)")
    return WebhookChannel(name, wants, url, secret, _ca(table))


def _secret(table: Table, what: str) -> Secret | None:
    file, env = table.opt_str(f"{what}_file"), table.opt_str(f"{what}_env")
    if file is not None and env is not None:
        raise table.fail(f"{what}_env", f"give {what}_file or {what}_env, not both")
    if env is not None and (not env or "=" in env or "\0" in env):
        raise table.fail(f"{what}_env", f"{env!r} is no environment variable name")
    if file is None and env is None:
        return None
    key = f"{what}_file" if file is not None else f"{what}_env"
    where = f"{table.file}: {table.key_path(key)}"
    return Secret(where, table.path(f"{what}_file") if file is not None else None, env)


def _ca(table: Table) -> Path | None:
    return table.path("ca") if table.opt_str("ca") is not None else None


def _host(table: Table, key: str, host: str) -> str:
    if not host or any(c.isspace() or not c.isprintable() for c in host):
        raise table.fail(key, f"{host!r} is no host name")
    return host


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
