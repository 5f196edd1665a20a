"""An event a compliance officer is told about, and its JSON form (docs/configuration.md).

Its `event_id` is the SHA-256 of the fields that say which event it is (its kind, pairing,
finding identity, and what makes this occurrence another: the severity it changed to, the due
date it passed, the report it opened or resolved in), never of wording or of when it was made:
the same event found again, in the same cycle or after a restart, has the same id, and the
outbox queues it once. Delivery is at least once (a send whose outcome is unknown is sent
again): a receiver drops repeats by `event_id`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

from invsync.agent.config.notify import EVENT_KINDS
from invsync.agent.times import parse_rfc3339, rfc3339

SCHEMA = "invsync-event/1"


@dataclass(frozen=True)
class Event:
    kind: str  # one of EVENT_KINDS
    agent_party: str  # the party whose agent tells
    time: datetime  # when the agent found it
    message: str
    pairing: str = ""
    report_id: str = ""
    code: str = ""  # the finding's code; "" for cycle and test events
    sha256: str = ""
    subject: str = ""
    severity: str = ""  # the finding's severity (for `resolved`, the one it had)
    party: str = ""  # the party that must act
    due: datetime | None = None
    occurrence: str = ""  # what makes this event another of the same finding (see the module)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        if self.time.tzinfo is None or (self.due is not None and self.due.tzinfo is None):
            raise ValueError("event times must be timezone-aware")

    @property
    def event_id(self) -> str:
        fields = (self.kind, self.pairing, self.code, self.sha256, self.party, self.occurrence)
        return hashlib.sha256("\0".join(fields).encode()).hexdigest()

    def to_json(self) -> dict[str, object]:
        obj = asdict(self)
        obj["time"] = rfc3339(self.time)
        obj["due"] = None if self.due is None else rfc3339(self.due)
        return {"schema": SCHEMA, "event_id": self.event_id, **obj}

    def to_bytes(self) -> bytes:
        """The canonical bytes a command reads and a webhook's signature covers."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    def summary(self) -> str:
        """One line, for a mail's subject and the logs."""
        where = f" {self.pairing}" if self.pairing else ""
        what = f" {self.code}" if self.code else ""
        cert = f" {self.sha256[:16]}" if self.sha256 else ""
        return f"invsync {self.agent_party}{where}: {self.kind}{what}{cert}"


def event_from_bytes(data: bytes) -> Event:
    """An event as the outbox stored it (`to_bytes`); the store's own rows, so trusted."""
    obj = json.loads(data)
    due = obj["due"]
    return Event(
        kind=obj["kind"],
        agent_party=obj["agent_party"],
        time=parse_rfc3339(obj["time"]),
        message=obj["message"],
        pairing=obj["pairing"],
        report_id=obj["report_id"],
        code=obj["code"],
        sha256=obj["sha256"],
        subject=obj["subject"],
        severity=obj["severity"],
        party=obj["party"],
        due=None if due is None else parse_rfc3339(due),
        occurrence=obj["occurrence"],
    )
