"""Declared certificate profiles: what an operator says its CA certificates look like.

The root cause of Mozilla bug 1695993 was a profile mismatch: 9-byte serials where JPRS
declared 16 bytes. A party declares its operators' profiles in its configuration; they travel
in the snapshot header and the `profile-deviation` rule compares certificates against them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OperatorProfile:
    operator: str
    serial_bytes: int | None = None  # serial number length in bytes
    allowed_ekus: tuple[str, ...] = ()  # dotted OIDs; empty: not declared
    max_validity_days: int | None = None
    # The certificates it applies to, by their notBefore: a profile changes from a date on
    # (a new serial length, a CA/B Forum requirement), and binds nothing issued before.
    effective_from: datetime | None = None
    effective_until: datetime | None = None  # exclusive

    def declared(self) -> bool:
        return bool(self.serial_bytes or self.allowed_ekus or self.max_validity_days)

    def applies_to(self, issued: datetime) -> bool:
        """Whether a certificate issued (notBefore) at `issued` falls under the profile."""
        if self.effective_from is not None and issued < self.effective_from:
            return False
        return self.effective_until is None or issued < self.effective_until
