"""When the agent pushes a new snapshot: on a change of content, or to refresh one that ages.

A new version every cycle would bury real changes among identical snapshots and grow both
databases for nothing; never pushing an unchanged inventory would let the last snapshot expire,
and the peer could not tell a quiet party from a frozen one. So a snapshot is pushed when its
content differs from the last one sent, or when the last one is older than the refresh age
(`agent.snapshot_refresh_seconds`), which comes before its expiry.

"Content" is the whole set (a delta's included, agent.exchange.delta) minus what changes with
every build: version, issue and expiry times, the previous digest, whether it travels as a
delta, the log checkpoint (the log grows with every exchange, so it would make every cycle
push), and each source's `last_seen` (it moves forward at every collection; snapshots no longer
carry it, older ones may).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from invsync.v1 import invsync_pb2 as pb

__all__ = ["PushReason", "content_key", "push_reason"]


class PushReason(Enum):
    FIRST = "first snapshot"
    CHANGED = "content changed"
    ROTATION = "announces a new signing key"
    REFRESH = "refresh before expiry"
    RESTORED = "continues after our latest snapshot in the exchange's log"


def content_key(payload: bytes) -> bytes:
    """The content of a whole set (a full payload, or a delta's full form), without the fields
    every build changes, as comparable bytes."""
    msg = pb.SnapshotPayload.FromString(payload)
    header = msg.header
    for name in (
        "version",
        "issued_at",
        "expires_at",
        "previous_digest",
        "log_checkpoint",
        "delta",
    ):
        header.ClearField(name)
    for record in msg.records:
        for source in record.sources:
            source.ClearField("last_seen")
    key: bytes = msg.SerializeToString(deterministic=True)
    return key


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
    if last_payload is None or content_key(last_payload) != content_key(candidate):
        return PushReason.ROTATION if announces else PushReason.CHANGED
    if now - last_issued_at >= refresh_after:
        return PushReason.REFRESH
    return None
