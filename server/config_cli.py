"""`invsync config check FILE`: the daemons' start-up validation, without starting anything.

It loads the file with load_agent_config or load_server_config, then loads every key file the
configuration names, as the daemon would: the signing key as a private key, every pinned
`signing_keys` entry as a public key, and the TLS key as a private key. Private key files
(the agent's `agent.signing_key` and `server.key`, the server's `server.signing_key` and
`tls.key`) that group or others can read are refused. The checks are `agent.config.keyfiles`', which
both daemons also run at start.

The daemons read the signing key without a passphrase, so a passphrase-protected signing key is
reported as an error ("is encrypted; a passphrase is required"): the daemon would fail on it.
"""

from __future__ import annotations

from pathlib import Path

import click

from invsync.agent.config.keyfiles import (
    check_agent_keys,
    public_key_files,
    signing_key_file,
    tls_key_file,
)
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ConfigError
from invsync.agent.tomlconf import Table
from invsync.server.client_crl import load_revoked
from invsync.server.config import ServerConfig, load_server_config


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def check_agent(file: Path) -> str:
    """Validate an agent configuration; a one-line summary when it is sound."""
    config = load_agent_config(file)
    check_agent_keys(config)
    pairings = _plural(len(config.pairings), "pairing")
    return f"agent config for party {config.party}, {pairings}"


def check_server_keys(config: ServerConfig) -> None:
    """Every key file of a server configuration, private ones first (they must be 0600)."""
    file = config.file
    signing_key_file(file, "server.signing_key", config.signing_key)
    tls_key_file(file, "tls.key", config.tls.key)
    if config.tls.client_crl is not None:
        load_revoked(config.tls.client_crl, config.tls.client_ca, f"{file}: tls.client_crl")
    for name, party in config.parties.items():
        public_key_files(file, f"parties.{name}.signing_keys", party.signing_keys)


def check_server(file: Path) -> str:
    """Validate an exchange server configuration; a one-line summary when it is sound."""
    config = load_server_config(file)
    check_server_keys(config)
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

    Every key file the configuration names must load as a key; private key files must not be
    readable by group or others. Exit 0 when sound; 2 with the first error, which
    names the configuration key. A passphrase-protected signing key is an error: the daemons
    read it without a passphrase.
    """
    kind = kind or detect_kind(file)
    summary = check_agent(file) if kind == "agent" else check_server(file)
    click.echo(f"{file}: ok ({summary})")
