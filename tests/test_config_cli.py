"""`invsync config check`: the daemons' start-up validation plus key files, on the demo files."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from agent import keys
from agent.errors import ConfigError
from server.config_cli import config_group
from server.localfed import agent_config, write_federation


@pytest.fixture
def fed(tmp_path: Path) -> Path:
    write_federation(tmp_path)
    (tmp_path / "secom.toml").write_text(agent_config("secom", 7443))
    (tmp_path / "jprs.toml").write_text(agent_config("jprs", 7443))
    return tmp_path


def _check(file: Path, *extra: str) -> Result:
    return CliRunner().invoke(config_group, ["check", str(file), *extra])


def _error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, ConfigError), result.exception
    return str(result.exception)


def test_server_config_ok(fed: Path) -> None:
    result = _check(fed / "server.toml")
    assert result.exit_code == 0, result.output
    summary = "server config 'demo-exchange', 2 parties, 1 pairing"
    assert result.output == f"{fed / 'server.toml'}: ok ({summary})\n"


@pytest.mark.parametrize("party", ["secom", "jprs"])
def test_agent_config_ok(fed: Path, party: str) -> None:
    file = fed / f"{party}.toml"
    result = _check(file)
    assert result.exit_code == 0, result.output
    assert result.output == f"{file}: ok (agent config for party {party}, 1 pairing)\n"


def test_kind_can_be_forced(fed: Path) -> None:
    # An agent configuration read as a server one fails on its unknown top-level tables.
    message = _error(_check(fed / "secom.toml", "--kind", "server"))
    assert message.startswith(f"{fed / 'secom.toml'}: ")
    assert _check(fed / "secom.toml", "--kind", "agent").exit_code == 0


def test_undetectable_kind(fed: Path) -> None:
    file = fed / "other.toml"
    file.write_text('[server]\nname = "x"\n')
    assert _error(_check(file)) == (
        f"{file}: neither an agent configuration ([agent] table) nor a server configuration "
        "([server] and [tls] tables); pass --kind"
    )


def test_missing_signing_key_names_agent_signing_key(fed: Path) -> None:
    (fed / "keys" / "secom.key").unlink()
    message = _error(_check(fed / "secom.toml"))
    assert message == (
        f"{fed / 'secom.toml'}: agent.signing_key: file not found: {fed / 'keys' / 'secom.key'}"
    )


def test_signing_key_that_is_not_a_key(fed: Path) -> None:
    key = fed / "keys" / "secom.key"
    key.write_text("not a key\n")
    message = _error(_check(fed / "secom.toml"))
    assert message == (
        f"{fed / 'secom.toml'}: agent.signing_key: signing key {key}: "
        "not a PEM file (expected '-----BEGIN ...' of a private key)"
    )


def test_encrypted_signing_key_is_an_error_the_daemon_would_hit(fed: Path) -> None:
    key = fed / "keys" / "secom.key"
    key.unlink()
    keys.write_private_key(key, keys.generate(), b"secret")
    message = _error(_check(fed / "secom.toml"))
    assert message == (
        f"{fed / 'secom.toml'}: agent.signing_key: signing key {key}: "
        "is encrypted; a passphrase is required"
    )


@pytest.mark.parametrize(
    ("key_path", "relative"),
    [("server.signing_key", "keys/server.key"), ("tls.key", "tls/server.key")],
)
def test_server_refuses_loose_private_key_files(fed: Path, key_path: str, relative: str) -> None:
    path = fed / relative
    path.chmod(0o640)
    message = _error(_check(fed / "server.toml"))
    assert message == (
        f"{fed / 'server.toml'}: {key_path}: file {path} is readable by group or others; "
        "chmod 600 it"
    )
    path.chmod(0o600)
    assert _check(fed / "server.toml").exit_code == 0


def test_public_key_file_that_is_not_a_key(fed: Path) -> None:
    pub = fed / "keys" / "jprs.pub"
    pub.write_bytes((fed / "tls" / "jprs.crt").read_bytes())
    message = _error(_check(fed / "server.toml"))
    assert message == (
        f"{fed / 'server.toml'}: parties.jprs.signing_keys[0]: public key {pub}: "
        "is a certificate, not a PEM public key"
    )
    message = _error(_check(fed / "secom.toml"))
    assert message == (
        f"{fed / 'secom.toml'}: peers.jprs.signing_keys[0]: public key {pub}: "
        "is a certificate, not a PEM public key"
    )


def test_agent_tls_key_that_is_not_a_key(fed: Path) -> None:
    key = fed / "tls" / "secom.key"
    key.write_text("garbage\n")
    message = _error(_check(fed / "secom.toml"))
    assert message == (
        f"{fed / 'secom.toml'}: server.key: TLS key {key}: not an unencrypted PEM private key"
    )


def test_every_config_option_has_help() -> None:
    for command in config_group.commands.values():
        assert (command.help or "").strip()
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (command.name, param.name)
