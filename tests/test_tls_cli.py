"""`invsync tls init`: a CA, a server and client certificates that chain, with the right EKUs."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from invsync.agent.cli.tls import tls_group
from invsync.agent.errors import InvsyncError


def _init(directory: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        tls_group,
        ["init", str(directory), "--server-name", "exchange.example", *extra],
    )


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    assert cert.issuer == ca.subject
    # Raises InvalidSignature when the certificate was not signed by the CA's key.
    key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))


def _ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    directory = tmp_path_factory.mktemp("fed") / "tls"
    result = _init(directory, "--client", "secom", "--client", "jprs")
    assert result.exit_code == 0, result.output
    return directory, result


def test_certificates_chain_to_the_ca(federation: tuple[Path, Result]) -> None:
    directory, _ = federation
    ca = _cert(directory / "ca.pem")
    _signed_by(ca, ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in ("server", "secom", "jprs"):
        _signed_by(_cert(directory / f"{name}.crt"), ca)


def test_a_certificate_from_another_ca_does_not_chain(
    federation: tuple[Path, Result], tmp_path: Path
) -> None:
    directory, _ = federation
    other = tmp_path / "other"
    assert _init(other, "--client", "x").exit_code == 0
    # Same CA name, different key: only the signature tells them apart.
    with pytest.raises(InvalidSignature):
        _signed_by(_cert(other / "server.crt"), _cert(directory / "ca.pem"))


def test_server_certificate_eku_and_sans(federation: tuple[Path, Result]) -> None:
    directory, _ = federation
    server = _cert(directory / "server.crt")
    assert _ekus(server) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["exchange.example"]
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)


@pytest.mark.parametrize("name", ["secom", "jprs"])
def test_client_certificates(federation: tuple[Path, Result], name: str) -> None:
    directory, result = federation
    client = _cert(directory / f"{name}.crt")
    assert _ekus(client) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    common_names = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in common_names] == [name]
    assert f'client {name}: Common Name {name}; configure tls_identity = "{name}"' in (
        result.output
    )


def test_keys_are_0600_and_every_file_is_listed(federation: tuple[Path, Result]) -> None:
    directory, result = federation
    written = sorted(p.name for p in directory.iterdir())
    assert written == sorted(
        ["ca.pem", "server.crt", "server.key", "secom.crt", "secom.key", "jprs.crt", "jprs.key"]
    )
    for name in written:
        assert str(directory / name) in result.output, name
        if name.endswith(".key"):
            assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name


def test_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "existing.txt").write_text("keep me")
    result = _init(tmp_path, "--client", "secom")
    assert isinstance(result.exception, InvsyncError)
    assert str(result.exception) == f"{tmp_path} is not empty; refusing to write into it"
    assert [p.name for p in tmp_path.iterdir()] == ["existing.txt"]


def test_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    result = _init(tmp_path, "--client", "secom")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "secom.crt").exists()


@pytest.mark.parametrize(
    ("clients", "message"),
    [
        (["../evil"], "--client '../evil': use letters, digits, '.', '_' and '-' only"),
        (["server"], "--client 'server' is reserved for the server files; choose another"),
        (["secom", "secom"], "--client 'secom' is given twice"),
    ],
)
def test_bad_client_names_are_refused(tmp_path: Path, clients: list[str], message: str) -> None:
    directory = tmp_path / "tls"
    args = [arg for name in clients for arg in ("--client", name)]
    result = _init(directory, *args)
    assert isinstance(result.exception, InvsyncError)
    assert str(result.exception) == message
    assert not directory.exists()


def test_every_tls_option_has_help() -> None:
    for command in tls_group.commands.values():
        assert (command.help or "").strip()
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (command.name, param.name)
