"""Running `invsync tls ...` in process, for the federation CA's tests."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from cryptography import x509

from invsync.agent.cli.tls import tls_group
from invsync.agent.errors import InvsyncError


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(tls_group, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    """The command's result; it must exit 0."""
    result = cli(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def refused(*args: str | Path) -> str:
    """The message of the project error the command must end with."""
    result = cli(*args)
    assert isinstance(result.exception, InvsyncError), (result.output, result.exception)
    return str(result.exception)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())
