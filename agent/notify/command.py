"""The command channel: a program run with the event's JSON on its standard input; exit 0 is
sent, anything else a failure (its last line of standard error is kept). It runs with the
agent's environment but for the variables that hold other channels' passwords and keys."""

from __future__ import annotations

import os
import subprocess

from invsync.agent.config.notify import CommandChannel
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError

ERROR_CHARS = 200


def run_command(channel: CommandChannel, event: Event, timeout: float) -> None:
    try:
        done = subprocess.run(
            channel.argv,
            input=event.to_bytes(),
            capture_output=True,
            timeout=timeout,
            check=False,
            env={k: v for k, v in os.environ.items() if k not in channel.hidden_env},
        )
    except subprocess.TimeoutExpired as e:
        raise SendError(f"{channel.name}: {channel.argv[0]} ran over {timeout:g} s") from e
    except (OSError, ValueError) as e:  # ValueError: an argument no program can be given
        reason = e.strerror if isinstance(e, OSError) else str(e)
        raise SendError(f"{channel.name}: cannot run {channel.argv[0]}: {reason}") from e
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        said = f": {lines[-1][:ERROR_CHARS]}" if lines else ""
        raise SendError(f"{channel.name}: {channel.argv[0]} exited {done.returncode}{said}")
