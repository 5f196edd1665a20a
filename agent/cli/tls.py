"""`invsync tls`: the federation's TLS certificates.

`tls init` makes a small federation at once for a test or a pilot
(agent.exchange.pki.make_federation): it writes every key on one host and keeps no CA key, so
a pilot that needs another client later runs it again and redistributes everything.

For a federation that runs for years, keys never leave their host (issue 14): the exchange
operator keeps a CA (`tls ca init`, agent.exchange.federation_ca), each party makes its own key
and request (`tls request`, agent.exchange.tls_request) and sends only the request, and the
operator signs it (`tls sign`) and sends back the certificate and the CA's certificate.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.pki import PLAIN_NAME, VALIDITY, make_federation

_RESERVED = ("server", "ca")


class TlsInitError(InvsyncError):
    """`tls init` refused its directory or a name. The message says which."""

    hint = "Choose an empty or new directory and names of letters, digits, '.', '_' and '-'."


_DIRECTORY = click.argument(
    "directory", metavar="DIR", type=click.Path(path_type=Path, file_okay=False)
)
_CA_DIRECTORY = click.option(
    "--ca",
    "ca_dir",
    required=True,
    metavar="DIR",
    type=click.Path(path_type=Path, file_okay=False),
    help="The CA directory made by `tls ca init`.",
)


@click.group("tls")
def tls_group() -> None:
    """The federation's TLS certificates: a CA that keeps its key, requests, signing.

    Each party's key and request are made on its own host (`request`) and signed by the CA the
    exchange operator keeps (`ca init`, `sign`, `revoke`); `init` writes everything at once on
    one host, for a test or a pilot."""


@tls_group.group("ca")
def tls_ca() -> None:
    """The federation CA, kept by the exchange operator: its key never leaves that host."""


@tls_ca.command("init")
@_DIRECTORY
@click.option(
    "--common-name",
    default="invsync federation CA",
    show_default=True,
    metavar="NAME",
    help="The CA certificate's Common Name.",
)
@click.option(
    "--key-command",
    metavar="'CMD ARGS'",
    help="Sign with a key kept in a hardware module instead of ca.key: the command that reads "
    "the bytes to sign on stdin and prints their DER ECDSA-SHA256 signature (see above and "
    "docs/operations.md 2.2). Needs --public-key.",
)
@click.option(
    "--public-key",
    metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With --key-command: the module's public key, PEM or DER (P-256 or P-384).",
)
@click.option(
    "--key-timeout",
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    type=float,
    help="With --key-command: how long it may take to sign (at most 600); then it is stopped.",
)
def tls_ca_init(
    directory: Path,
    common_name: str,
    key_command: str | None,
    public_key: Path | None,
    key_timeout: float,
) -> None:
    """Make a CA in DIR (new or empty): ca.pem to hand to every party, ca.key (mode 600) to keep
    on this host, and issued.jsonl, the register of what it signs. Valid for five years.

    With --key-command, no key is made: DIR/key-command.json (mode 600) records the command,
    which signs the CA certificate now and all the CA signs later. It is run without a shell,
    in DIR, with this environment; it is given the exact DER to sign (a TBSCertificate or
    TBSCertList) on stdin, and must print only the DER ECDSA signature over SHA-256 by the CA's
    key on stdout and exit 0 within --key-timeout seconds. Otherwise nothing is signed or
    written, and the error quotes the last line of its stderr."""
    from invsync.agent.exchange.ca_key import KeyCommand
    from invsync.agent.exchange.ca_register import REGISTER
    from invsync.agent.exchange.federation_ca import CA_VALIDITY, init_ca

    if key_command is None and public_key is not None:
        raise click.UsageError("--public-key is for --key-command")
    command = None if key_command is None else KeyCommand.parse(key_command, key_timeout)
    cert, key = init_ca(directory, common_name, command, public_key)
    click.echo(f"wrote {cert} (CA certificate: send it to every party and the server)")
    if command is None:
        click.echo(f"wrote {key} (CA key, mode 600: keep it here, never send it)")
    else:
        click.echo(f"wrote {key} (the CA signs with `{command.shown}`, which signed ca.pem)")
    click.echo(f"wrote {directory / REGISTER} (what the CA signs is recorded here)")
    click.echo(f"the CA certificate expires in {CA_VALIDITY.days} days")


def _notice(message: str) -> None:
    click.echo(message, err=True)


@tls_group.command("request")
@_DIRECTORY
@click.option(
    "--name",
    required=True,
    metavar="NAME",
    help="The Common Name asked for: the party's tls_identity, or the server's DNS name.",
)
def tls_request(directory: Path, name: str) -> None:
    """Make a key (NAME.key, mode 600) and a certificate signing request (NAME.csr) in DIR, on
    the host that will use the key. Send only NAME.csr to the exchange operator."""
    from invsync.agent.exchange.tls_request import make_request

    key, csr = make_request(directory, name)
    click.echo(f"wrote {key} (private key, mode 600: it stays on this host)")
    click.echo(f"wrote {csr} (request: send it to the exchange operator to sign)")


@tls_group.command("sign")
@click.argument("csr", metavar="CSR", type=click.Path(path_type=Path, dir_okay=False))
@_CA_DIRECTORY
@click.option(
    "--client/--server",
    "client",
    required=True,
    help="A party's client certificate (clientAuth) or the exchange server's (serverAuth).",
)
@click.option(
    "--days",
    default=90,
    show_default=True,
    metavar="N",
    type=int,
    help="Validity in days, at most 397.",
)
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the certificate (default: CSR with .crt for its suffix).",
)
def tls_sign(csr: Path, ca_dir: Path, client: bool, days: int, out: Path | None) -> None:
    """Sign a request made by `tls request` with the CA in DIR: the certificate names the
    request's Common Name alone, and is recorded in the CA's register before it is written.
    It ends --days on, or with the CA certificate if that is sooner. One `sign` or `revoke`
    at a time works on a CA (DIR/lock): a second waits up to two minutes."""
    from invsync.agent.exchange.federation_ca import FederationCaError, sign_request

    target = out or csr.with_suffix(".crt")
    if target.exists():
        raise FederationCaError(f"{target} exists; refusing to replace it")
    try:
        request = csr.read_bytes()
    except OSError as e:
        raise FederationCaError(f"{csr}: cannot read ({e.strerror})") from e
    if not target.parent.is_dir():
        raise FederationCaError(f"{target}: its directory does not exist")
    signed = sign_request(ca_dir, request, str(csr), server=not client, days=days, notice=_notice)
    try:
        target.write_bytes(signed.cert.public_bytes(serialization.Encoding.PEM))
    except OSError as e:
        raise FederationCaError(
            f"{target}: cannot write the certificate ({e.strerror}); the register holds serial "
            f"{signed.cert.serial_number:x}: sign the request again to another --out"
        ) from e
    cert = signed.cert
    name = cert.subject.rfc4514_string()
    click.echo(f"wrote {target} ({signed.kind} certificate {name}, serial {cert.serial_number:x})")
    click.echo(f"recorded in {signed.register}; it expires {cert.not_valid_after_utc:%Y-%m-%d}")
    if signed.capped:
        click.echo(
            f"its validity was cut short of {days} days to end with the CA certificate's; "
            "make a new CA before then"
        )
    if client:
        identity = name.removeprefix("CN=")
        click.echo(
            "send it back with the CA certificate; the server names the party with "
            f'tls_identity = "{identity}"'
        )


@tls_group.command("revoke")
@click.argument("serial", metavar="SERIAL|CERT")
@_CA_DIRECTORY
@click.option("--reason", default="", metavar="TEXT", help="Why, kept in the CA's register.")
def tls_revoke(serial: str, ca_dir: Path, reason: str) -> None:
    """Revoke the certificate of SERIAL (hex, as `tls sign` printed it), or the one in the PEM
    file CERT, and write the CA's CRL of every revoked certificate again (DIR/crl.pem): the
    server refuses a client certificate it lists once it reads it as `tls.client_crl` (at
    start, and on each reload). For a serial already revoked, only the CRL is written again
    (to complete a revocation, or renew the CRL before its next update, 30 days on)."""
    from invsync.agent.exchange.federation_ca import revoke, serial_of_file

    if Path(serial).is_file():
        serial = serial_of_file(ca_dir, Path(serial))
    done = revoke(ca_dir, serial, reason, notice=_notice)
    entry = done.entry
    what = "was already revoked" if done.again else "revoked"
    click.echo(f"serial {entry['serial']} ({entry['kind']} {entry['common_name']}) {what}")
    click.echo(
        f"wrote {done.crl} (CRL number {done.number}): copy it to the server as "
        "tls.client_crl, send it SIGHUP"
    )


@tls_group.command("init")
@_DIRECTORY
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
    if not PLAIN_NAME.fullmatch(server_name):
        raise TlsInitError(f"--server-name {server_name!r} is not a plain DNS name")
    seen: set[str] = set()
    for name in clients:
        if not PLAIN_NAME.fullmatch(name):
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
