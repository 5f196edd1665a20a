"""When the agent pushes a new snapshot: on a change of content, or to refresh one that ages.

A new version every cycle would bury real changes among identical snapshots and grow both
databases for nothing; never pushing an unchanged inventory would let the last snapshot expire,
and the peer could not tell a quiet party from a frozen one. So a snapshot is pushed when its
content differs from the last one sent, or when the last one is older than the refresh age
(`agent.snapshot_refresh_seconds`), which comes before its expiry.

"Content" is the whole set (a delta's included, agent.exchange.delta) minus what changes with
every build: version, issue and expiry times, the previous digest, whether it travels as a
delta, and the log checkpoint (the log grows with every exchange, so it would make every cycle
push). Both sets were built here, so their records are compared as the bytes the builder wrote
(agent.exchange.delta), never parsed: at 100,000 records, parsing both sets took half a second
of every cycle (issue 13). A source's `last_seen` moves at every collection, and the builder
leaves it out; a set restored from an older release's snapshot that carried it differs once,
which costs one snapshot.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from invsync.agent.exchange.delta import accepted_header, header_end

__all__ = ["PushReason", "push_reason", "same_content"]


class PushReason(Enum):
    FIRST = "first snapshot"
    CHANGED = "content changed"
    ROTATION = "announces a new signing key"
    REFRESH = "refresh before expiry"
    RESTORED = "continues after our latest snapshot in the exchange's log"


def same_content(last: bytes, candidate: bytes) -> bool:
    """Whether two whole sets built here (full forms, agent.exchange.delta) hold the same
    content: their headers without the fields every build changes, and their records byte
    for byte."""
    return _content_header(last) == _content_header(candidate) and _same_records(last, candidate)


def _content_header(whole: bytes) -> bytes:
    header = accepted_header(whole, "a whole set built here")
    # What every build changes: not content.
    for name in ("version", "issued_at", "expires_at", "previous_digest", "log_checkpoint"):
        header.ClearField(name)
    header.ClearField("delta")
    key: bytes = header.SerializeToString(deterministic=True)
    return key


_CHUNK = 1 << 20  # compared a piece at a time: a copy of a whole set at 1,000,000 is 600 MB


def _same_records(last: bytes, candidate: bytes) -> bool:
    at_last, at_candidate = header_end(last), header_end(candidate)
    size = len(last) - at_last
    if len(candidate) - at_candidate != size:
        return False
    return all(
        last[at_last + i : at_last + i + _CHUNK]
        == candidate[at_candidate + i : at_candidate + i + _CHUNK]
        for i in range(0, size, _CHUNK)
    )


def push_reason(
    last_payload: bytes | None,
    last_issued_at: datetime | None,
    candidate: bytes,
    *,
    now: datetime,
    refresh_after: timedelta,
    announces: bool = False,
) -> PushReason | None:
    """Why `candidate` must be pushed after the last sent snapshot, or None to keep the last.

    `announces`: the candidate announces a new signing key, which makes it differ.
    """
    if last_issued_at is None:
        return PushReason.FIRST
    # No last content (a delta restored from the log, whose whole set is not known here):
    # pushing again costs one snapshot, keeping a changed one would hide the change.
    if last_payload is None or not same_content(last_payload, candidate):
        return PushReason.ROTATION if announces else PushReason.CHANGED
    if now - last_issued_at >= refresh_after:
        return PushReason.REFRESH
    return None
