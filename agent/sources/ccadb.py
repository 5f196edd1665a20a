"""CCADB's `AllCertificateRecordsCSVFormatV5` report: each CA certificate as root programs see it.

One `Disclosure` per row: owners, record type, revocation status (and date and reason when the
report has such columns: the V5 report has none), technically constrained, derived trust bits,
and one `CcadbAudit` per audit kind the row fills in. Required columns: `SHA-256 Fingerprint`,
`CA Owner`, `Revocation Status`, `Certificate Record Type`; other columns are ignored, since CCADB
adds some now and then. The PEM report is read by `ccadb_pems`.

CCADB spells one owner several ways ("SECOM Trust Systems CO., LTD." and "... Co., Ltd.");
`normalize_owner` gives the key to match them on, and the Disclosure keeps the text as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import CcadbAudit, Disclosure
from invsync.agent.sources.issuance_log import normalize_reason
from invsync.agent.sources.tabular import Row, RowError, Tally, collect, open_table

SHA256 = "SHA-256 Fingerprint"
CA_OWNER = "CA Owner"
REVOCATION_STATUS = "Revocation Status"
RECORD_TYPE = "Certificate Record Type"
REQUIRED = (SHA256, CA_OWNER, REVOCATION_STATUS, RECORD_TYPE)

RECORD_TYPES = ("Root Certificate", "Intermediate Certificate")
REVOCATION_STATUSES = ("", "Not Revoked", "Revoked", "Parent Cert Revoked")
# Not in the V5 report; other CCADB reports and hand-made extracts name them so.
REVOCATION_DATE_COLUMNS = ("Revocation Date", "Date of Revocation")
REVOCATION_REASON_COLUMNS = ("Revocation Reason", "RFC 5280 Revocation Reason Code")

# Column prefix ("<prefix> Audit URL", "<prefix> Audit Type", ...) -> CcadbAudit.kind
AUDIT_KINDS = {
    "Standard": "standard",
    "NetSec": "netsec",
    "TLS BR": "br",
    "TLS EVG": "ev-ssl",
    "EV Code Signing": "ev-code-signing",  # V4 and older reports
    "Code Signing": "code-signing",
    "S/MIME BR": "smime",
    "VMC": "vmc",
}

_AUDIT_PARTS = ("URL", "Type", "Statement Date", "Period Start Date", "Period End Date")

_SHA256 = re.compile(r"^[0-9A-F]{64}$")
_DATE = re.compile(r"^(\d{4})[-./](\d{1,2})[-./](\d{1,2})$")  # CCADB: 2021.03.31 or 2021-03-31
_REASON_CODE = re.compile(r"^\(\d+\)\s*")  # "(1) keyCompromise"
_NOT_ALNUM = re.compile(r"[\W_]+")
# Company-form suffixes stripped (one, at the end) when matching owner names.
_OWNER_SUFFIXES = (
    ("co", "ltd"),
    ("co", "inc"),
    ("company", "limited"),
    ("ltd",),
    ("limited",),
    ("inc",),
    ("incorporated",),
    ("corp",),
    ("corporation",),
    ("llc",),
    ("gmbh",),
)


def load_ccadb_records(path: Path, ctx: SourceContext) -> Facts:
    """One Disclosure per row of an AllCertificateRecordsCSVFormatV5 report (`.csv[.gz]`)."""
    tally = Tally(ctx.progress)
    with open_table(path) as table:
        table.require(REQUIRED)
        rows = ((row.location, row) for row in table.rows)
        disclosures, skipped = collect(rows, _disclosure, ctx, tally)
    tally.finish()
    if tally.done == 0:
        raise SourceError(f"{path}: no certificate record found (the report has no rows)")
    return Facts(disclosures=tuple(disclosures), skipped=tuple(skipped))


def normalize_owner(name: str) -> str:
    """The key two spellings of one CA owner share: case and accents folded, punctuation and
    spaces collapsed, and one trailing company form ("Co., Ltd.", "Inc.", "GmbH"...) dropped.
    Conservative: an abbreviation ("JPRS") or a translation stays another name."""
    words = _NOT_ALNUM.sub(" ", _without_accents(name.casefold())).split()
    for suffix in _OWNER_SUFFIXES:
        if len(words) > len(suffix) and tuple(words[-len(suffix) :]) == suffix:
            words = words[: -len(suffix)]
            break
    return " ".join(words)


def _without_accents(text: str) -> str:
    # "İ" casefolds to "i" and a combining dot, which would otherwise split the word in two.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fingerprint(value: str, where: str) -> str:
    """A `SHA-256 Fingerprint` cell, upper-cased; anything but 64 hex digits is a RowError."""
    sha = value.strip().upper()
    if not _SHA256.match(sha):
        raise RowError(where, f"{SHA256} {value!r} is not 64 hex digits")
    return sha


def _disclosure(row: Row) -> Disclosure:
    cells = {name: value.strip() for name, value in row.fields().items()}
    where = row.location
    return Disclosure(
        sha256=fingerprint(cells[SHA256], where),
        source=where,
        ca_owner=cells[CA_OWNER],
        subordinate_ca_owner=cells.get("Subordinate CA Owner", ""),
        record_type=_one_of(cells, RECORD_TYPE, RECORD_TYPES, where),
        revocation_status=_one_of(cells, REVOCATION_STATUS, REVOCATION_STATUSES, where),
        revocation_date=_first_date(cells, REVOCATION_DATE_COLUMNS, where),
        revocation_reason=_reason(cells, where),
        technically_constrained=_boolean(cells, "Technically Constrained", where),
        derived_trust_bits=_trust_bits(cells.get("Derived Trust Bits", "")),
        audits=tuple(_audits(cells, where)),
    )


def _one_of(cells: Mapping[str, str], column: str, known: tuple[str, ...], where: str) -> str:
    value = cells[column]
    if value not in known:
        listed = ", ".join(repr(k) for k in known)
        raise RowError(where, f"{column} {value!r} is not one of {listed}")
    return value


def _first_date(cells: Mapping[str, str], columns: tuple[str, ...], where: str) -> date | None:
    present = [column for column in columns if column in cells]
    return _date(cells, present[0], where) if present else None


def _date(cells: Mapping[str, str], column: str, where: str) -> date | None:
    value = cells.get(column, "")
    if not value:
        return None
    match = _DATE.match(value)
    if match is None:
        raise RowError(where, f"{column} {value!r} is not a date like 2021.03.31 or 2021-03-31")
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError as e:  # well-formed but impossible, such as month 13
        raise RowError(where, f"{column} {value!r} is not a valid date: {e}") from e


def _reason(cells: Mapping[str, str], where: str) -> str:
    present = [cells[column] for column in REVOCATION_REASON_COLUMNS if cells.get(column)]
    if not present:
        return ""
    reason = normalize_reason(_REASON_CODE.sub("", present[0]))
    if reason is None:
        raise RowError(where, f"revocation reason {present[0]!r} is not an RFC 5280 reason")
    return reason


def _boolean(cells: Mapping[str, str], column: str, where: str) -> bool | None:
    value = cells.get(column, "")
    if not value:
        return None
    if value.upper() not in ("TRUE", "FALSE"):
        raise RowError(where, f"{column} {value!r} is not TRUE, FALSE or empty")
    return value.upper() == "TRUE"


def _trust_bits(value: str) -> tuple[str, ...]:
    return tuple(bit.strip() for bit in value.split(";") if bit.strip())


def _audits(cells: Mapping[str, str], where: str) -> list[CcadbAudit]:
    audits = (_audit(cells, prefix, kind, where) for prefix, kind in AUDIT_KINDS.items())
    return [audit for audit in audits if audit is not None]


def _audit(cells: Mapping[str, str], prefix: str, kind: str, where: str) -> CcadbAudit | None:
    """The audit of one kind, if the row fills in its URL, type or any of its dates."""
    url, type_, *dates = (f"{prefix} Audit {part}" for part in _AUDIT_PARTS)
    if not any(cells.get(column) for column in (url, type_, *dates)):
        return None
    statement, start, end = (_date(cells, column, where) for column in dates)
    return CcadbAudit(kind, cells.get(url, ""), cells.get(type_, ""), statement, start, end)
