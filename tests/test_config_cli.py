"""`invsync config check`: the daemons' start-up validation plus key files, on the demo files."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from invsync.agent.errors import ConfigError
from invsync.agent.exchange import keys
from invsync.server.config_cli import config_group


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
    ("config", "key_path", "relative"),
    [
        ("server.toml", "server.signing_key", "keys/server.key"),
        ("server.toml", "tls.key", "tls/server.key"),
        ("secom.toml", "agent.signing_key", "keys/secom.key"),
        ("secom.toml", "server.key", "tls/secom.key"),
    ],
)
@pytest.mark.parametrize(("mode", "shown"), [(0o640, "0640"), (0o604, "0604"), (0o620, "0620")])
def test_loose_private_key_files_are_refused(
    fed: Path, config: str, key_path: str, relative: str, mode: int, shown: str
) -> None:
    path = fed / relative
    path.chmod(mode)
    message = _error(_check(fed / config))
    assert message == (
        f"{fed / config}: {key_path}: file {path} is open to group or others (mode {shown}); "
        "chmod 600 it"
    )
    path.chmod(0o400)  # read-only for the owner is as private as 0600
    assert _check(fed / config).exit_code == 0


@pytest.mark.parametrize(("config", "table"), [("server.toml", "server"), ("secom.toml", "agent")])
def test_an_invalid_metrics_listen_names_the_key(fed: Path, config: str, table: str) -> None:
    file = fed / config
    file.write_text(
        file.read_text().replace(f"[{table}]\n", f'[{table}]\nmetrics_listen = "9464"\n', 1)
    )
    assert _error(_check(file)) == (
        f"{file}: {table}.metrics_listen: expected HOST:PORT such as 127.0.0.1:9464, got '9464'"
    )


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
