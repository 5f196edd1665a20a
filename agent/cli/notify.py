"""`invsync notify test`: one test event sent on every `[[notify]]` channel, now, outside the
outbox (nothing is recorded, nothing waits for a retry), each channel's outcome on its line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from invsync.agent.cli.options import config_option
from invsync.agent.config.keyfiles import secret_files
from invsync.agent.config.settings import load_agent_config
from invsync.agent.errors import ConfigError, InvsyncError, bounded
from invsync.agent.notify.channels import describe, send
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError
from invsync.agent.times import rfc3339


@click.group("notify")
def notify_group() -> None:
    """Try the notification channels of an agent's configuration."""


@notify_group.command("test")
@config_option("The agent's TOML configuration, with its [[notify]] entries.", required=True)
def notify_test(config_path: Path) -> None:
    """Send one test event on every [[notify]] channel and say which worked.

    Exits 0 when every channel took it, 3 when any failed (after trying them all), 2 for a
    configuration without [[notify]] entries or with a bad one."""
    config = load_agent_config(config_path)
    channels = config.notify.channels
    if not channels:
        raise ConfigError(f"{config.file}: no [[notify]] entry to test")
    secret_files(config)  # there and 0600, as `agent run` requires
    now = datetime.now(UTC)
    message = f"A test notification of the invsync agent of {config.party}, sent at your request."
    event = Event("test", config.party, now, message, occurrence=rfc3339(now))
    failed = []
    for channel in channels:
        try:
            send(channel, event, config.notify.settings.timeout_seconds)
        except Exception as e:  # as the daemon: one channel's bug keeps no other untried
            failed.append(channel.name)
            shown = bounded(e, 500) if isinstance(e, InvsyncError) else repr(e)
            # A channel's errors open with its name; the line names it once.
            shown = shown.removeprefix(f"{channel.name}: ")
            click.echo(f"FAILED {channel.name}: {shown[:500]}")
        else:
            click.echo(f"ok     {channel.name} ({describe(channel)})")
    if failed:
        raise ChannelsFailed(
            f"{len(failed)} of {len(channels)} channel(s) failed: {', '.join(failed)}"
        )


class ChannelsFailed(SendError):
    hint = (
        "Each FAILED line says why: check the channel's host, port, URL, credentials or command "
        "in the configuration. A test event is not kept: run `invsync notify test` again."
    )
