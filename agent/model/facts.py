"""What a source can tell about CA certificates besides the certificates themselves (DESIGN §4).

Certificate sources (PEM, DER, PKCS#7, issuance logs, CCADB's PEM report, CT) give records.
The public view and the audit give facts *about* certificates, keyed by SHA-256 or by issuer
key and serial: CCADB disclosure records, audit scope lists, CRL entries. A source returns a
`Facts` bundle (`agent.model.bundle`); `agent.inventory` attaches facts to
records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class AuditPeriod:
    """Which audit a scope list or a CCADB audit entry belongs to."""

    kind: str  # e.g. "WebTrust CA", "WebTrust BR", "ETSI EN 319 411-1"; "" when unknown
    period_start: date | None
    period_end: date | None
    statement_date: date | None = None


@dataclass(frozen=True, slots=True)
class AuditScopeEntry:
    """`sha256` is in scope of `audit`, according to `source` (file and row or line)."""

    sha256: str
    audit: AuditPeriod
    source: str
    flags: tuple[str, ...] = ()  # scheme flags a list gives, e.g. ("WTCA", "WTBRSSL")


@dataclass(frozen=True, slots=True)
class CcadbAudit:
    """One audit kind of a CCADB record: standard, BR (TLS), EV, code signing, S/MIME..."""

    kind: str  # "standard", "br", "ev-ssl", "ev-code-signing", "code-signing", "smime", "vmc"...
    url: str
    type: str  # "WebTrust", "ETSI EN 319 411-1", ...
    statement_date: date | None
    period_start: date | None
    period_end: date | None


@dataclass(frozen=True, slots=True)
class Disclosure:
    """A CCADB `AllCertificateRecordsCSVFormatV5` row: the certificate as root programs see it."""

    sha256: str
    source: str
    ca_owner: str
    subordinate_ca_owner: str
    record_type: str  # "Root Certificate" or "Intermediate Certificate"
    revocation_status: str  # "", "Not Revoked", "Revoked", "Parent Cert Revoked"
    revocation_date: date | None
    revocation_reason: str
    technically_constrained: bool | None
    derived_trust_bits: tuple[str, ...]
    audits: tuple[CcadbAudit, ...]


@dataclass(frozen=True, slots=True)
class CrlRevocation:
    """An entry of a CRL whose signature verified with the key `issuer_spki_sha256`."""

    issuer_spki_sha256: str
    serial_hex: str  # as `CertInfo.serial_hex`: the DER INTEGER content bytes, uppercase
    revoked_at: datetime
    reason: str  # a REVOCATION_REASONS value, or ""
    source: str  # "crl:<path>" and, where useful, the entry index
    crl_signature_hash: str  # "sha256", "sha1", ...: SHA-1 CRLs are accepted, and say so


@dataclass(frozen=True, slots=True)
class Skipped:
    """A row, line or entry left out under --skip-invalid, and why."""

    location: str
    reason: str
