"""A channel as the notifier uses it: which events it wants, how it is shown, and one send."""

from __future__ import annotations

from invsync.agent.config.notify import (
    FINDING_KINDS,
    Channel,
    CommandChannel,
    SmtpChannel,
    WebhookChannel,
)
from invsync.agent.notify.command import run_command
from invsync.agent.notify.events import Event
from invsync.agent.notify.smtp import send_mail
from invsync.agent.notify.webhook import post_event


def wants(channel: Channel, event: Event) -> bool:
    """A `test` event goes everywhere; a finding's must match the severities and codes too."""
    if event.kind == "test":
        return True
    if event.kind not in channel.wants.events:
        return False
    if event.kind not in FINDING_KINDS:
        return True
    codes = channel.wants.codes
    return event.severity in channel.wants.severities and (not codes or event.code in codes)


def describe(channel: Channel) -> str:
    if isinstance(channel, SmtpChannel):
        return f"smtp to {', '.join(channel.to)} via {channel.host}:{channel.port}"
    if isinstance(channel, WebhookChannel):
        return f"webhook {channel.shown_url}"
    return f"command {channel.argv[0]}"


def send(channel: Channel, event: Event, timeout: float) -> None:
    """Send `event` on `channel`, or raise SendError naming the channel."""
    if isinstance(channel, CommandChannel):
        run_command(channel, event, timeout)
    elif isinstance(channel, SmtpChannel):
        send_mail(channel, event, timeout)
    else:
        post_event(channel, event, timeout)
