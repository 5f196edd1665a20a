"""`invsync keys generate` and `invsync keys show`: modes, passphrases, key ids, refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from invsync.agent.cli.keys import keys_group
from invsync.agent.errors import InvsyncError, KeyLoadError
from invsync.agent.exchange import keys

SECRET = "correct horse battery staple"


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(keys_group, list(args), env=env)


def _error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, InvsyncError), result.exception
    return str(result.exception)


def _secret_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "pass.txt"
    path.write_text(SECRET + "\n")
    path.chmod(mode)
    return path


def _key_id_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("key id: ")]
    assert len(lines) == 1, output
    return lines[0].removeprefix("key id: ")


@pytest.mark.parametrize("kind", keys.KINDS)
def test_generate_writes_0600_key_and_pub_and_prints_the_key_id(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "party.key"
    result = _run("generate", "--out", str(out), "--type", kind)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    signing = keys.load_signing_key(out)
    public = keys.load_verify_key(tmp_path / "party.key.pub")
    assert signing.kind == kind
    assert public == signing.public
    assert _key_id_line(result.output) == public.keyid
    assert "not encrypted" in result.output


def test_passphrase_file_round_trip_and_never_printed(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    result = _run("generate", "--out", str(out), "--passphrase-file", str(_secret_file(tmp_path)))
    assert result.exit_code == 0, result.output
    assert SECRET not in result.output
    assert b"ENCRYPTED PRIVATE KEY" in out.read_bytes()
    # The trailing newline written by `echo` is not part of the passphrase.
    signing = keys.load_signing_key(out, SECRET.encode())
    assert _key_id_line(result.output) == signing.keyid
    with pytest.raises(KeyLoadError, match="is encrypted; a passphrase is required"):
        keys.load_signing_key(out)


def test_passphrase_env_round_trip_and_show(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    env = {"INVSYNC_PASS": SECRET}
    result = _run("generate", "--out", str(out), "--passphrase-env", "INVSYNC_PASS", env=env)
    assert result.exit_code == 0, result.output
    assert keys.load_signing_key(out, SECRET.encode()).keyid == _key_id_line(result.output)
    shown = _run("show", str(out), "--passphrase-env", "INVSYNC_PASS", env=env)
    assert shown.exit_code == 0, shown.output
    assert SECRET not in shown.output
    assert f"{out}: private key" in shown.output
    assert "type: ed25519" in shown.output
    assert _key_id_line(shown.output) == _key_id_line(result.output)


def test_show_with_a_wrong_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    keys.write_private_key(out, keys.generate(), SECRET.encode())
    env = {"WRONG": "not the passphrase"}
    message = _error(_run("show", str(out), "--passphrase-env", "WRONG", env=env))
    assert message == f"signing key {out}: wrong passphrase (could not decrypt the key)"
    assert "not the passphrase" not in message


def test_show_an_encrypted_key_without_a_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    keys.write_private_key(out, keys.generate(), SECRET.encode())
    message = _error(_run("show", str(out)))
    assert message == f"signing key {out}: is encrypted; a passphrase is required"


def test_show_a_public_key_gives_the_same_key_id(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    generated = _run("generate", "--out", str(out), "--type", "ecdsa-p384")
    pub = tmp_path / "party.key.pub"
    shown = _run("show", str(pub))
    assert shown.exit_code == 0, shown.output
    assert f"{pub}: public key" in shown.output
    assert "type: ecdsa-p384" in shown.output
    assert _key_id_line(shown.output) == keys.load_verify_key(pub).keyid
    assert _key_id_line(shown.output) == _key_id_line(generated.output)


def test_show_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    message = _error(_run("show", str(path)))
    assert (
        message == f"public key {path}: not a PEM file (expected '-----BEGIN ...' of a public key)"
    )


def test_generate_refuses_to_overwrite_the_private_key(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    out.write_text("precious")
    message = _error(_run("generate", "--out", str(out)))
    assert message == f"signing key {out}: already exists; refusing to overwrite"
    assert out.read_text() == "precious"
    assert not (tmp_path / "party.key.pub").exists()


def test_generate_refuses_to_overwrite_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    pub = tmp_path / "party.key.pub"
    pub.write_text("pinned elsewhere")
    message = _error(_run("generate", "--out", str(out)))
    assert message == f"public key {pub}: already exists; refusing to overwrite"
    assert pub.read_text() == "pinned elsewhere"
    assert not out.exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_loose_passphrase_file_is_refused(tmp_path: Path, mode: int) -> None:
    secret = _secret_file(tmp_path, mode)
    out = tmp_path / "party.key"
    for args in (["generate", "--out", str(out)], ["show", str(out)]):
        message = _error(_run(*args, "--passphrase-file", str(secret)))
        assert message == (f"passphrase file {secret} is readable by group or others; chmod 600 it")
        assert SECRET not in message
    assert not out.exists()


def test_unset_passphrase_variable_is_named(tmp_path: Path) -> None:
    out = tmp_path / "party.key"
    result = _run("generate", "--out", str(out), "--passphrase-env", "INVSYNC_NO_SUCH_VAR")
    assert _error(result) == "environment variable INVSYNC_NO_SUCH_VAR is unset or empty"
    assert not out.exists()


def test_both_passphrase_sources_is_a_usage_error(tmp_path: Path) -> None:
    secret = _secret_file(tmp_path)
    result = _run(
        "generate",
        "--out",
        str(tmp_path / "k"),
        "--passphrase-file",
        str(secret),
        "--passphrase-env",
        "X",
    )
    assert result.exit_code == 2
    assert "give --passphrase-file or --passphrase-env, not both" in result.output


def test_every_keys_option_has_help() -> None:
    for command in keys_group.commands.values():
        assert (command.help or "").strip()
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, (command.name, param.name)
