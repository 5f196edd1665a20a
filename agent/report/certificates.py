"""The certificates a report's findings name, with the facts an officer files them by.

A finding names its certificate by SHA-256 and subject only; an incident report, a CSV for a
spreadsheet and the HTML page also need the issuer, serial and validity. The report body lists
them once per certificate (`certificates`), taken from the two snapshots it compares, so a report
file alone is enough to fill in an incident's appendix, without the party's database.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from invsync.agent.errors import ReportError
from invsync.agent.model.findings import parse_rfc3339
from invsync.agent.model.record import CertInfo, CertRecord
from invsync.agent.reconcile.side_index import by_sha256
from invsync.agent.times import rfc3339

_SHA256 = re.compile(r"[0-9A-F]{64}")
_SERIAL = re.compile(r"(?:[0-9A-F]{2})*")
FIELDS = ("sha256", "subject", "issuer", "serial", "not_before", "not_after")


@dataclass(frozen=True)
class ListedCertificate:
    """One certificate as the report lists it. `subject` and `issuer` are RFC 4514 text as in
    the certificate (attacker-controlled: every rendering escapes them); `serial` is uppercase
    hex of the DER INTEGER's content bytes."""

    sha256: str
    subject: str
    issuer: str
    serial: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, info: CertInfo) -> ListedCertificate:
        return cls(
            info.sha256, info.subject, info.issuer, info.serial_hex, info.not_before, info.not_after
        )

    def to_json(self) -> dict[str, object]:
        return {
            "sha256": self.sha256,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
        }

    @classmethod
    def from_json(cls, value: object, where: str) -> ListedCertificate:
        if not isinstance(value, dict) or set(value) != set(FIELDS):
            raise ReportError(f"{where}: expected an object with exactly {', '.join(FIELDS)}")
        text = {key: _text(value, key, where) for key in FIELDS}
        if not _SHA256.fullmatch(text["sha256"]):
            raise ReportError(f"{where}: field 'sha256' is not 64 uppercase hex digits")
        if not _SERIAL.fullmatch(text["serial"]):
            raise ReportError(f"{where}: field 'serial' is not uppercase hex bytes")
        listed = cls(
            sha256=text["sha256"],
            subject=text["subject"],
            issuer=text["issuer"],
            serial=text["serial"],
            not_before=parse_rfc3339(text["not_before"], f"{where}: field 'not_before'"),
            not_after=parse_rfc3339(text["not_after"], f"{where}: field 'not_after'"),
        )
        if listed.not_after < listed.not_before:
            raise ReportError(f"{where}: field 'not_after' is before 'not_before'")
        return listed


def _text(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ReportError(f"{where}: field {key!r} is not a string")
    return value


# Given the SHA-256s a body's findings name, the facts of those of them the caller holds.
CertificateLookup = Callable[[frozenset[str]], Iterable[ListedCertificate]]


def lookup_in(
    *groups: Sequence[CertRecord], earlier: Iterable[ListedCertificate] = ()
) -> CertificateLookup:
    """A lookup over record groups, first group first, then `earlier` (a previous report's
    certificates, for a certificate no group holds any more). Each group is looked up through
    the index the reconciliation of the same snapshots made and kept (`side_index`), so listing
    costs what the findings name, not what the snapshots hold."""

    def find(shas: frozenset[str]) -> list[ListedCertificate]:
        found: dict[str, ListedCertificate] = {}
        for group in groups:
            index = by_sha256(group)
            for sha in shas - found.keys():
                record = index.get(sha)
                if record is not None:
                    found[sha] = ListedCertificate.of(record.info)
        for listed in earlier:
            found.setdefault(listed.sha256, listed)
        return list(found.values())

    return find
