"""`invsync keys generate` and `invsync keys show`: a party's snapshot and report signing key.

The private key is written 0600 and never over an existing file
(agent.exchange.keys.write_private_key); the public key goes next to it as PATH.pub, the file the
peers and the server pin. A passphrase comes from a file only its owner can read, or from an
environment variable; it is never echoed, printed or logged, and never taken on the command line,
where `ps` would show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from invsync.agent.config.keyfiles import is_private
from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.keys import (
    KINDS,
    generate,
    load_signing_key,
    load_verify_key,
    write_private_key,
)


class PassphraseError(InvsyncError):
    """The passphrase could not be read safely. The message names its file or variable."""

    hint = (
        "Keep the passphrase in a file only its owner can read (chmod 600), "
        "or in an environment variable; never on the command line."
    )


class PublicKeyFileError(InvsyncError):
    """The public key file next to a new private key could not be written."""

    hint = "Move the existing file away or choose another --out; nothing was overwritten."


def read_passphrase(passphrase_file: Path | None, passphrase_env: str | None) -> bytes | None:
    """The passphrase from `passphrase_file` or the variable `passphrase_env`, or None.

    A file readable by group or others is refused: the passphrase is only as safe as its file.
    One trailing newline (as `echo` writes) is not part of the passphrase.
    """
    if passphrase_file is not None and passphrase_env is not None:
        raise click.UsageError("give --passphrase-file or --passphrase-env, not both")
    if passphrase_file is not None:
        try:
            if not is_private(passphrase_file):
                raise PassphraseError(
                    f"passphrase file {passphrase_file} is readable by group or others; "
                    "chmod 600 it"
                )
            data = passphrase_file.read_bytes()
        except OSError as e:
            raise PassphraseError(
                f"passphrase file {passphrase_file}: cannot read ({e.strerror})"
            ) from e
        passphrase = data.removesuffix(b"\n").removesuffix(b"\r")
        if not passphrase:
            raise PassphraseError(f"passphrase file {passphrase_file} is empty")
        return passphrase
    if passphrase_env is not None:
        value = os.environ.get(passphrase_env, "")
        if not value:
            raise PassphraseError(f"environment variable {passphrase_env} is unset or empty")
        return value.encode("utf-8")
    return None


F = TypeVar("F", bound=Callable[..., Any])


def passphrase_options(func: F) -> F:
    """--passphrase-file and --passphrase-env, as both commands take them."""
    func = click.option(
        "--passphrase-env",
        metavar="VAR",
        default=None,
        help="Read the passphrase from this environment variable.",
    )(func)
    return click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Read the passphrase from this file (mode 600; one trailing newline is ignored).",
    )(func)


@click.group("keys")
def keys_group() -> None:
    """Create and inspect snapshot and report signing keys."""


@keys_group.command("generate")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The private key file to create (mode 600); the public key is written to OUT.pub.",
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(KINDS),
    default="ed25519",
    show_default=True,
    help="The key algorithm.",
)
@passphrase_options
def keys_generate(
    out: Path, kind: str, passphrase_file: Path | None, passphrase_env: str | None
) -> None:
    """Generate a signing key pair and print its key id.

    The key id is the SHA-256 of the public key's SubjectPublicKeyInfo. Give OUT.pub to the
    peers and the exchange server to pin; keep OUT private. An existing file is never
    overwritten.
    """
    passphrase = read_passphrase(passphrase_file, passphrase_env)
    pub = out.with_name(out.name + ".pub")
    if pub.exists():
        raise PublicKeyFileError(f"public key {pub}: already exists; refusing to overwrite")
    key = generate(kind)
    write_private_key(out, key, passphrase)
    try:
        fd = os.open(pub, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as e:
        raise PublicKeyFileError(f"public key {pub}: cannot create ({e.strerror})") from e
    with os.fdopen(fd, "wb") as f:
        f.write(key.public.public_pem())
    encrypted = "encrypted" if passphrase else "not encrypted"
    click.echo(f"private key: {out} ({kind}, {encrypted})")
    click.echo(f"public key: {pub}")
    click.echo(f"key id: {key.keyid}")


@keys_group.command("show")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@passphrase_options
def keys_show(path: Path, passphrase_file: Path | None, passphrase_env: str | None) -> None:
    """Print the type and key id of a private or public key file (PEM)."""
    passphrase = read_passphrase(passphrase_file, passphrase_env)
    try:
        data = path.read_bytes()
    except OSError:
        data = b""  # load_verify_key below reports the unreadable file by name
    if b"PRIVATE KEY-----" in data:
        signing = load_signing_key(path, passphrase)
        click.echo(f"{path}: private key")
        click.echo(f"type: {signing.kind}")
        click.echo(f"key id: {signing.keyid}")
        return
    public = load_verify_key(path)
    click.echo(f"{path}: public key")
    click.echo(f"type: {public.kind}")
    click.echo(f"key id: {public.keyid}")
