"""RFC 3339 UTC times, the one spelling invsync writes: `2021-03-09T00:00:00Z`.

Seconds precision unless the time carries microseconds, so a time read back compares equal
to the one written.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """`moment` in UTC with a `Z`. A naive datetime has no defined instant: ValueError."""
    if moment.tzinfo is None:
        raise ValueError(f"time {moment.isoformat()} has no timezone")
    utc = moment.astimezone(UTC)
    spec = "seconds" if utc.microsecond == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_rfc3339(text: str) -> datetime:
    """The inverse of `rfc3339`; ValueError for a time without a zone or not RFC 3339."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)
