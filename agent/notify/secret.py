"""What a channel's send can fail with, and its secrets read when they are used (a rotated
password or webhook key is taken at the next send, with no restart)."""

from __future__ import annotations

import os

from invsync.agent.config.notify import Secret
from invsync.agent.errors import InvsyncError

SECRET_BYTES = 4096  # a password or key longer than this is surely the wrong file


class SendError(InvsyncError):
    """A notification could not be sent on a channel; the message names the channel."""

    hint = (
        "Check the channel's [[notify]] entry (host, port, URL, credentials) and that its "
        "receiver runs; `invsync notify test` tries every channel. The event stays in the "
        "outbox and is sent again later."
    )


def read_secret(secret: Secret, channel: str) -> str:
    """The secret's text: its file's first line, or its environment variable's value."""
    if secret.env is not None:
        value = os.environ.get(secret.env)
        if not value:
            raise SendError(f"{channel}: {secret.key_path}: ${secret.env} is not set or empty")
        return value
    assert secret.file is not None
    try:
        with secret.file.open("rb") as f:
            data = f.read(SECRET_BYTES + 1)
    except OSError as e:
        raise SendError(
            f"{channel}: {secret.key_path}: cannot read {secret.file}: {e.strerror}"
        ) from e
    if len(data) > SECRET_BYTES:
        raise SendError(f"{channel}: {secret.key_path}: {secret.file} is over {SECRET_BYTES} bytes")
    try:
        line = data.decode("utf-8").splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError as e:
        raise SendError(f"{channel}: {secret.key_path}: {secret.file} is not UTF-8") from e
    if not line:
        raise SendError(f"{channel}: {secret.key_path}: {secret.file} is empty")
    return line
