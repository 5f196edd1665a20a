"""The webhook channel: the event's JSON POSTed to a URL, signed so that a receiver can check it
came from this agent: `X-Invsync-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`
under the entry's shared secret. A redirect is a failure (it would drop the body or send it
where nobody configured); any 2xx answer is sent."""

from __future__ import annotations

import hashlib
import hmac
import ssl
import urllib.error
import urllib.request
from typing import IO

from invsync.agent.config.notify import WebhookChannel
from invsync.agent.notify.events import Event
from invsync.agent.notify.secret import SendError, read_secret

SIGNATURE_HEADER = "X-Invsync-Signature"


def signature(secret: str, body: bytes) -> str:
    """The header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post_event(channel: WebhookChannel, event: Event, timeout: float) -> None:
    body = event.to_bytes()
    request = urllib.request.Request(
        channel.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "invsync-agent",
            "X-Invsync-Event": event.kind,
            SIGNATURE_HEADER: signature(read_secret(channel.secret, channel.name), body),
        },
    )
    try:
        with _opener(channel).open(request, timeout=timeout) as answer:
            _drain(answer)
    except urllib.error.HTTPError as e:
        raise SendError(f"{channel.name}: POST {channel.url}: HTTP {e.code} {e.reason}") from e
    except urllib.error.URLError as e:
        raise SendError(f"{channel.name}: POST {channel.url}: {e.reason}") from e
    except (OSError, ValueError) as e:
        raise SendError(f"{channel.name}: POST {channel.url}: {e}") from e


def _drain(answer: IO[bytes]) -> None:
    answer.read(65536)  # the receiver's answer is not read further: a status is all it says


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


def _opener(channel: WebhookChannel) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=None if channel.ca is None else str(channel.ca))
    return urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=context), urllib.request.ProxyHandler({})
    )
