"""Declared certificate profiles: what an operator says its CA certificates look like.

The root cause of Mozilla bug 1695993 was a profile mismatch: 9-byte serials where JPRS
declared 16 bytes. A party declares its operators' profiles in its configuration; they travel
in the snapshot header and the `profile-deviation` rule compares certificates against them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OperatorProfile:
    operator: str
    serial_bytes: int | None = None  # serial number length in bytes
    allowed_ekus: tuple[str, ...] = ()  # dotted OIDs; empty: not declared
    max_validity_days: int | None = None

    def declared(self) -> bool:
        return bool(self.serial_bytes or self.allowed_ekus or self.max_validity_days)
