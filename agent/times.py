"""RFC 3339 UTC times, the one spelling invsync writes: `2021-03-09T00:00:00Z`.

Seconds precision unless the time carries microseconds, so a time read back compares equal
to the one written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


# Times written and read, each spelled once: a store writes and reads the same few times for
# every certificate (a collection's sources, shared validity dates), and both values are
# immutable. Emptied when full, so a store of distinct times costs at most this many.
_KEPT = 4096
_TEXTS: dict[datetime, str] = {}
_TIMES: dict[str, datetime] = {}


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC with a `Z`. A naive datetime has no defined instant: ValueError."""
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no timezone")
    if type(moment.tzinfo) is not timezone:
        # A zone with daylight saving: two instants an hour apart (fold) compare equal, so
        # such a time is spelled afresh, never looked up.
        return _spelled(moment)
    text = _TEXTS.get(moment)  # equal fixed-offset times are one instant: one spelling
    if text is None:
        text = _kept(_TEXTS, moment, _spelled(moment))
    return text


def _spelled(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_rfc3339(text: str) -> datetime:
    """The inverse of `rfc3339`; ValueError for a time without a zone or not RFC 3339."""
    moment = _TIMES.get(text)
    if moment is None:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError(f"{text!r} has no timezone")
        moment = _kept(_TIMES, text, parsed.astimezone(UTC))
    return moment


def _kept(cache: dict[K, V], key: K, value: V) -> V:
    if len(cache) >= _KEPT:
        cache.clear()
    cache[key] = value
    return value


def utc_now() -> datetime:
    return datetime.now(UTC)
