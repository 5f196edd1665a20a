"""The key files a daemon's configuration names, checked as the daemon will read them.

`invsync config check`, `invsync agent run` and `invsync server run` share these checks, so a key
file the daemon would trip over (unreadable, not a key, encrypted, or open to group or others)
stops it at start, before it listens or writes anything, with the configuration key naming it.
Every error reads `FILE: KEY.PATH: PROBLEM`, like the configuration loaders' own.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from invsync.agent.config.notify import SmtpChannel, WebhookChannel
from invsync.agent.config.settings import AgentConfig
from invsync.agent.errors import ConfigError, InvsyncError
from invsync.agent.exchange.keys import load_signing_key, load_verify_key
from invsync.agent.files import exposed_mode


def is_private(path: Path) -> bool:
    """True when group and others have no permission at all on `path` (0600 or tighter)."""
    return exposed_mode(path) is None


def config_error(file: Path, key_path: str, problem: str) -> ConfigError:
    return ConfigError(f"{file}: {key_path}: {problem}")


def private_file(file: Path, key_path: str, path: Path) -> None:
    """Refuse a private key file that group or others may read or replace."""
    try:
        mode = exposed_mode(path)
    except OSError as e:
        raise config_error(file, key_path, f"file {path}: cannot read ({e.strerror})") from e
    if mode is not None:
        raise config_error(
            file,
            key_path,
            f"file {path} is open to group or others (mode {mode:04o}); chmod 600 it",
        )


def signing_key_file(file: Path, key_path: str, path: Path) -> None:
    """A private signing key the daemon can load without a passphrase, mode 0600."""
    private_file(file, key_path, path)
    try:
        load_signing_key(path)
    except InvsyncError as e:
        raise config_error(file, key_path, str(e)) from e


def tls_key_file(file: Path, key_path: str, path: Path) -> None:
    """An unencrypted PEM private key, mode 0600: gRPC reads it only at the first call."""
    private_file(file, key_path, path)
    try:
        serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise config_error(file, key_path, f"TLS key {path}: cannot read ({e.strerror})") from e
    except (TypeError, ValueError, UnsupportedAlgorithm) as e:
        # TypeError: encrypted; gRPC cannot read an encrypted TLS key either.
        raise config_error(
            file, key_path, f"TLS key {path}: not an unencrypted PEM private key"
        ) from e


def public_key_files(file: Path, key_path: str, paths: tuple[Path, ...]) -> None:
    for i, path in enumerate(paths):
        try:
            load_verify_key(path)
        except InvsyncError as e:
            raise config_error(file, f"{key_path}[{i}]", str(e)) from e


def check_agent_keys(config: AgentConfig) -> None:
    """Every key file of an agent configuration, private ones first (they must be 0600)."""
    file = config.file
    signing_key_file(file, "agent.signing_key", config.signing_key)
    if config.next_signing_key is not None:
        signing_key_file(file, "agent.next_signing_key", config.next_signing_key)
    tls_key_file(file, "server.key", config.server.key)
    public_key_files(file, "server.signing_keys", config.server.signing_keys)
    for name, paths in config.peers.items():
        public_key_files(file, f"peers.{name}.signing_keys", paths)
    secret_files(config)


def secret_files(config: AgentConfig) -> None:
    """The password and webhook secret files of `[[notify]]`: there and 0600, as the signing
    key is (read again at each send, so a rotated secret needs no restart)."""
    for i, channel in enumerate(config.notify.channels):
        if isinstance(channel, SmtpChannel) and channel.password is not None:
            secret, key = channel.password, "password_file"
        elif isinstance(channel, WebhookChannel):
            secret, key = channel.secret, "secret_file"
        else:
            continue
        if secret.file is not None:
            private_file(config.file, f"notify[{i}].{key}", secret.file)
