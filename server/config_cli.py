"""`invsync config check FILE`: the daemons' start-up validation, without starting anything.

It loads the file with load_agent_config or load_server_config, then loads every key file the
configuration names, as the daemon would: the signing key as a private key, every pinned
`signing_keys` entry as a public key, and the TLS key as a private key. The server also refuses
private key files (`server.signing_key`, `tls.key`) that group or others can read.

The daemons read the signing key without a passphrase, so a passphrase-protected signing key is
reported as an error ("is encrypted; a passphrase is required"): the daemon would fail on it.
"""

from __future__ import annotations

import stat
from pathlib import Path

import click
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from agent.config import load_agent_config
from agent.errors import ConfigError, InvsyncError
from agent.keys import load_signing_key, load_verify_key
from agent.tomlconf import Table
from server.config import load_server_config


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _fail(file: Path, key_path: str, problem: str) -> ConfigError:
    return ConfigError(f"{file}: {key_path}: {problem}")


def _signing_key(file: Path, key_path: str, path: Path) -> None:
    try:
        load_signing_key(path)
    except InvsyncError as e:
        raise _fail(file, key_path, str(e)) from e


def _public_keys(file: Path, key_path: str, paths: tuple[Path, ...]) -> None:
    for i, path in enumerate(paths):
        try:
            load_verify_key(path)
        except InvsyncError as e:
            raise _fail(file, f"{key_path}[{i}]", str(e)) from e


def _tls_key(file: Path, key_path: str, path: Path) -> None:
    try:
        serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise _fail(file, key_path, f"TLS key {path}: cannot read ({e.strerror})") from e
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        # TypeError: encrypted; gRPC cannot read an encrypted TLS key either.
        raise _fail(file, key_path, f"TLS key {path}: not an unencrypted PEM private key") from e


def _private_mode(file: Path, key_path: str, path: Path) -> None:
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise _fail(file, key_path, f"file {path} is readable by group or others; chmod 600 it")


def check_agent(file: Path) -> str:
    """Validate an agent configuration; a one-line summary when it is sound."""
    config = load_agent_config(file)
    _signing_key(file, "agent.signing_key", config.signing_key)
    if config.next_signing_key is not None:
        _signing_key(file, "agent.next_signing_key", config.next_signing_key)
    _tls_key(file, "server.key", config.server.key)
    _public_keys(file, "server.signing_keys", config.server.signing_keys)
    for name, paths in config.peers.items():
        _public_keys(file, f"peers.{name}.signing_keys", paths)
    pairings = _plural(len(config.pairings), "pairing")
    return f"agent config for party {config.party}, {pairings}"


def check_server(file: Path) -> str:
    """Validate an exchange server configuration; a one-line summary when it is sound."""
    config = load_server_config(file)
    _private_mode(file, "server.signing_key", config.signing_key)
    _signing_key(file, "server.signing_key", config.signing_key)
    _private_mode(file, "tls.key", config.tls.key)
    _tls_key(file, "tls.key", config.tls.key)
    for name, party in config.parties.items():
        _public_keys(file, f"parties.{name}.signing_keys", party.signing_keys)
    parties = _plural(len(config.parties), "party").replace("partys", "parties")
    pairings = _plural(len(config.pairings), "pairing")
    return f"server config {config.name!r}, {parties}, {pairings}"


def detect_kind(file: Path) -> str:
    """'agent' for an [agent] table, 'server' for [server] with [tls]."""
    names = set(Table.load(file).names())
    if "agent" in names:
        return "agent"
    if {"server", "tls"} <= names:
        return "server"
    raise ConfigError(
        f"{file}: neither an agent configuration ([agent] table) nor a server configuration "
        "([server] and [tls] tables); pass --kind"
    )


@click.group("config")
def config_group() -> None:
    """Check agent and server configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--kind",
    type=click.Choice(["agent", "server"]),
    default=None,
    help="The kind of configuration; default: detected from its top-level tables.",
)
def config_check(file: Path, kind: str | None) -> None:
    """Run the validation a daemon runs at start, without starting anything.

    Every key file the configuration names must load as a key; the server's private key files
    must not be readable by group or others. Exit 0 when sound; 2 with the first error, which
    names the configuration key. A passphrase-protected signing key is an error: the daemons
    read it without a passphrase.
    """
    kind = kind or detect_kind(file)
    summary = check_agent(file) if kind == "agent" else check_server(file)
    click.echo(f"{file}: ok ({summary})")
