"""RFC 3339 UTC times, the one spelling invsync writes: `2021-03-09T00:00:00Z`.

Seconds precision unless the time carries microseconds, so a time read back compares equal
to the one written.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone

from invsync.agent.kept import Kept

# Times written and read, each spelled once: a store writes and reads the same few times for
# every certificate (a collection's sources, shared validity dates), and both values are
# immutable (agent.kept bounds how many are kept).
_TEXTS: Kept[datetime, str] = Kept()
_TIMES: Kept[str, datetime] = Kept()


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
        text = _TEXTS.keep(moment, _spelled(moment))
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
        moment = _TIMES.keep(text, parsed.astimezone(UTC))
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC)
