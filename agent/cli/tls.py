"""`invsync tls init`: a small TLS federation for a test or a pilot
(agent.exchange.pki.make_federation).

Production can use any existing CA instead. The CA's private key is not kept: a pilot that needs
another client later runs `tls init` again into a new directory and redistributes ca.pem.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.pki import VALIDITY, make_federation

# Names become file names (NAME.crt, NAME.key) and Common Names: letters, digits, . _ - only.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_RESERVED = ("server", "ca")


class TlsInitError(InvsyncError):
    """`tls init` refused its directory or a name. The message says which."""

    hint = "Choose an empty or new directory and names of letters, digits, '.', '_' and '-'."


@click.group("tls")
def tls_group() -> None:
    """Create TLS certificates for a test or pilot federation."""


@tls_group.command("init")
@click.argument("directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--server-name",
    required=True,
    metavar="NAME",
    help="DNS name of the exchange server (its certificate also names 127.0.0.1 and ::1).",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    required=True,
    metavar="NAME",
    help="A party's client certificate Common Name (its tls_identity); repeat per party.",
)
def tls_init(directory: Path, server_name: str, clients: tuple[str, ...]) -> None:
    """Write a CA, a server certificate and one client certificate per party into DIR.

    DIR must be new or empty. Private keys are written with mode 600. The certificates are
    valid for 30 days: this is for tests and pilots, not production.
    """
    if not _NAME.fullmatch(server_name):
        raise TlsInitError(f"--server-name {server_name!r} is not a plain DNS name")
    seen: set[str] = set()
    for name in clients:
        if not _NAME.fullmatch(name):
            raise TlsInitError(f"--client {name!r}: use letters, digits, '.', '_' and '-' only")
        if name in _RESERVED:
            raise TlsInitError(
                f"--client {name!r} is reserved for the {name} files; choose another"
            )
        if name in seen:
            raise TlsInitError(f"--client {name!r} is given twice")
        seen.add(name)
    if directory.exists() and any(directory.iterdir()):
        raise TlsInitError(f"{directory} is not empty; refusing to write into it")
    files = make_federation(directory, server_name, list(clients))
    click.echo(f"wrote {files['server'].ca} (CA certificate: trust it on the server and agents)")
    click.echo(f"wrote {files['server'].cert} and {files['server'].key} (server {server_name})")
    for name in clients:
        click.echo(f"wrote {files[name].cert} and {files[name].key} (client {name})")
    for name in clients:
        click.echo(f'client {name}: Common Name {name}; configure tls_identity = "{name}"')
    click.echo(f"the certificates expire in {VALIDITY.days} days")
