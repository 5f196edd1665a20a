"""Acknowledgements: a party says "we know about this finding" with a reason and an expiry.

A party acknowledges a finding by its code and certificate SHA-256 in its own configuration; the
acknowledgements travel in the header of the party's signed snapshot, so they carry its signature
and both agents and the server see the same ones. The reconciler marks a finding acknowledged
when the party that must act acknowledged it and the acknowledgement is in force at the report's
clock (acknowledged_at <= at < expires_at). An acknowledgement by a party that does not have to
act is ignored; an expired one leaves the finding open again. Both times are given explicitly
(not "when the agent read the file"), so every push of the same configuration says the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from invsync.agent.model.findings import CATALOGUE, AckMark, Finding

_SHA256 = re.compile(r"[0-9A-F]{64}")


@dataclass(frozen=True)
class Acknowledgement:
    code: str
    sha256: str  # uppercase hex SHA-256 of the certificate
    reason: str
    acknowledged_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise ValueError(f"unknown finding code {self.code!r}")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"not an uppercase hex SHA-256: {self.sha256!r}")
        if self.acknowledged_at.tzinfo is None or self.expires_at.tzinfo is None:
            raise ValueError("acknowledged_at and expires_at must be timezone-aware")
        if self.expires_at <= self.acknowledged_at:
            raise ValueError("expires_at must be after acknowledged_at")

    def in_force(self, at: datetime) -> bool:
        return self.acknowledged_at <= at < self.expires_at


def apply_acknowledgements(
    findings: Iterable[Finding],
    by_party: Mapping[str, Iterable[Acknowledgement]],
    at: datetime,
) -> tuple[Finding, ...]:
    """`findings`, each marked with the acknowledgement in force at `at` of the party that must
    act on it (the one expiring last, if several). Findings without one are returned as they are."""
    marks: dict[tuple[str, str, str], AckMark] = {}
    for party, acks in sorted(by_party.items()):
        for ack in acks:
            if not ack.in_force(at):
                continue
            mark = AckMark(party, ack.reason, ack.acknowledged_at, ack.expires_at)
            key = (party, ack.code, ack.sha256)
            if key not in marks or _later(mark, marks[key]):
                marks[key] = mark
    return tuple(
        replace(f, acknowledgement=marks.get((f.party, f.code, f.sha256))) for f in findings
    )


def _later(mark: AckMark, other: AckMark) -> bool:
    return (mark.expires_at, mark.acknowledged_at, mark.reason) > (
        other.expires_at,
        other.acknowledged_at,
        other.reason,
    )
