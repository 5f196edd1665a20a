"""The certificate record (DESIGN §3): what every part of invsync knows about one CA certificate.

Identity is the SHA-256 of the DER certificate, as 64 uppercase hex digits (CCADB's spelling).
Everything derived from the certificate is computed here, once, with `cryptography` (the names
read from their DER where agent.model.names spells them as `cryptography` does); the party's
view (operator, lifecycle, revocation) and provenance travel beside it.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import attrgetter
from typing import NamedTuple, Protocol

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from invsync.agent.errors import CertificateError
from invsync.agent.kept import Kept
from invsync.agent.model.der import Parts, basic_constraints, certificate_parts
from invsync.agent.model.facts import AuditScopeEntry, Disclosure
from invsync.agent.model.fast_init import fast_frozen_init
from invsync.agent.model.names import name_text

# Real trusted roots (SECOM's RootCA1 and RootCA2 among them) have serial number 0, which RFC 5280
# disallows; `cryptography` still parses them but warns on each. An inventory must hold them, so
# the warning is silenced for that one message only. (A future `cryptography` may refuse them.)
warnings.filterwarnings(
    "ignore",
    message="Parsed a serial number which wasn't positive",
    category=CryptographyDeprecationWarning,
)
# Likewise real CCADB certificates with name attributes over 64 characters, and UTF-8 in a
# VisibleString policy notice: defects for a profile check to report, not reasons to lose them.
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)
warnings.filterwarnings(
    "ignore",
    message=r"Invalid ASN\.1 \(UTF-8 characters in a VisibleString\)",
    category=CryptographyDeprecationWarning,
)

LIFECYCLES = ("in-use", "unused", "decommissioned")

# RFC 5280 §5.3.1 CRLReason names, as `cryptography.x509.ReasonFlags` values spell them.
REVOCATION_REASONS = tuple(flag.value for flag in x509.ReasonFlags)


# What `cryptography` raises, eagerly or from its lazy accessors, on hostile DER: a value,
# version, algorithm or name type it refuses, a duplicated extension, and TypeError from some
# lazy field decoders. Readers of certificates and CRLs catch exactly these at their boundary.
DECODE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    OverflowError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def sha256_hex(data: bytes) -> str:
    """Uppercase hex SHA-256, the way CCADB writes fingerprints."""
    return hashlib.sha256(data).hexdigest().upper()


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Revocation:
    revoked_at: datetime
    reason: str  # a REVOCATION_REASONS value, or "" when the source gave none
    source: str  # "kind:location" of the source that said so
    crl_signature_hash: str = ""  # for CRL evidence: "sha256", "sha1"... (SHA-1 is accepted)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SourceRef:
    kind: str  # "pem", "der", "issuance-log", ...
    location: str  # path, or path:line
    first_seen: datetime
    last_seen: datetime


@fast_frozen_init
@dataclass(frozen=True, slots=True, weakref_slot=True)
class CertInfo:
    """Everything derived from the DER bytes alone."""

    sha256: str
    der: bytes
    subject: str
    subject_der: bytes
    issuer: str
    issuer_der: bytes
    serial_hex: str  # uppercase, the DER INTEGER content bytes (so its length is the serial length)
    not_before: datetime
    not_after: datetime
    spki_der: bytes
    spki_sha256: str
    doppelganger_key: str  # SHA-256(subject DER || SPKI DER), as CCADB and CRLite group issuers
    tbs_sha256: str
    ski: str | None
    aki: str | None
    is_ca: bool
    path_len: int | None
    ekus: tuple[str, ...]  # dotted OIDs
    has_name_constraints: bool
    technically_constrained: bool  # Mozilla Root Store Policy 5.3.1, see _technically_constrained
    crl_urls: tuple[str, ...]
    self_issued: bool  # subject == issuer
    # The subject's organizationName values that are text, for attribution rules and scope.
    subject_organizations: tuple[str, ...]
    # Why `cryptography` could not decode the extensions ("" when it could). Then only the CA
    # flag is read (agent/model/der.py); key ids, EKUs and name constraints stay unknown.
    extensions_error: str = ""

    @property
    def serial_bytes(self) -> int:
        return len(self.serial_hex) // 2


@fast_frozen_init
@dataclass(frozen=True, slots=True, weakref_slot=True)
class CertRecord:
    """One CA certificate as a party holds it."""

    info: CertInfo
    operator: str | None = None
    lifecycle: str | None = None
    revocation: Revocation | None = None
    sources: tuple[SourceRef, ...] = field(default=())
    # How `operator` was determined (see agent/inventory/attribution.py); "" while unattributed.
    attribution: str = ""
    # The public view and the audit, attached by agent/model/merge.py.
    disclosure: Disclosure | None = None
    audit_scope: tuple[AuditScopeEntry, ...] = ()
    # Every revocation claim (issuance log, CRLs); `revocation` is the effective one.
    revocation_evidence: tuple[Revocation, ...] = ()

    @property
    def sha256(self) -> str:
        return self.info.sha256

    def with_view(self, **changes: object) -> CertRecord:
        """This record with `changes`; itself when each already holds (a collection attaches
        views to every record and most have none, so no copy is made for them)."""
        if all(_same(getattr(self, name), value) for name, value in changes.items()):
            return self
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_attribution(self, operator: str | None, attribution: str) -> CertRecord:
        """`with_view(operator=operator, attribution=attribution)`, made directly: attribution
        makes one for each record of a collection (`with_sources` says why)."""
        if _same(self.operator, operator) and _same(self.attribution, attribution):
            return self
        return self._made(operator, self.sources, attribution)

    def with_sources(self, sources: tuple[SourceRef, ...]) -> CertRecord:
        """`with_view(sources=sources)`, made directly: the store's `as_stored` makes one for
        each of 100,000 records a cycle, where `replace` took 3 us of the 4 each."""
        if _same(self.sources, sources):
            return self
        return self._made(self.operator, sources, self.attribution)

    def _made(
        self, operator: str | None, sources: tuple[SourceRef, ...], attribution: str
    ) -> CertRecord:
        """This record with these three fields, made by the constructor directly (every field
        named here, in order: the sentinel tests hold it to `replace`)."""
        return CertRecord(
            self.info, operator, self.lifecycle, self.revocation, sources,
            attribution, self.disclosure, self.audit_scope, self.revocation_evidence,
        )  # fmt: skip


def _same(held: object, value: object) -> bool:
    # Equal values of one type: a record is compared field by field, so 1 and True (or a
    # list and a tuple) must not pass for each other.
    return held is value or (type(held) is type(value) and held == value)


# Every CertInfo alive in the process, by its DER: decoding a snapshot while another holding the
# same certificates is alive (a report's current and previous snapshots, both parties' lists)
# shares their CertInfo instead of parsing each again. Weak: it holds nothing no one else holds.
_ALIVE: weakref.WeakValueDictionary[bytes, CertInfo] = weakref.WeakValueDictionary()
_ALIVE_LOCK = threading.Lock()


class InfoCache(Protocol):
    """CertInfo derived by earlier processes, kept by SHA-256 (agent.store.facts_cache): an agent
    runs as a fresh process each cycle, and parsing is most of a steady cycle's work."""

    def info(self, sha256: str, der: bytes) -> CertInfo | None:
        """The CertInfo of `der` rebuilt without parsing it, or None if not kept (or unusable)."""
        ...

    def add_info(self, info: CertInfo) -> None:
        """Keep `info`, just parsed, for later processes."""
        ...


_CACHE: InfoCache | None = None


def install_info_cache(cache: InfoCache) -> None:
    """Make `parse_certificate` consult and fill `cache` (the last one installed wins)."""
    global _CACHE
    _CACHE = cache


def uninstall_info_cache(cache: InfoCache) -> None:
    """Stop using `cache`, if it is the one installed (another may have been installed since)."""
    global _CACHE
    if _CACHE is cache:
        _CACHE = None


def parse_certificate(der: bytes) -> CertInfo:
    """Derive every field of DESIGN §3 from a DER certificate (the CertInfo already made from
    the same bytes, while one is alive: it is immutable; else the installed InfoCache's).

    Raises CertificateError (a SourceError, and a ValueError for callers that catch that) saying
    what was wrong when the bytes are not a certificate `cryptography` accepts; no foreign
    exception escapes. The sources add the file and line, the snapshot decoder the record index.
    """
    with _ALIVE_LOCK:
        alive = _ALIVE.get(der)
    if alive is not None:
        return alive
    info = _cached_or_parsed(der)
    with _ALIVE_LOCK:
        return _ALIVE.setdefault(info.der, info)


def _cached_or_parsed(der: bytes) -> CertInfo:
    cache = _CACHE
    if cache is None:
        return _parse_checked(der)
    info = cache.info(sha256_hex(der), der)
    if info is None:
        info = _parse_checked(der)  # bytes that are no certificate raise, and are not kept
        cache.add_info(info)
    return info


def _parse_checked(der: bytes) -> CertInfo:
    try:
        return _parse_certificate(der)
    except CertificateError:
        raise
    except DECODE_ERRORS as e:
        # cryptography's own parse errors read well alone; name any other kind of failure.
        raise CertificateError(
            str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
        ) from e


def _parse_certificate(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    parts = _parts(der)
    issuer, subject = _names(cert, parts)
    # Not the key's bytes as the certificate holds them: cryptography writes some keys again
    # otherwise (RSA without NULL parameters, compressed EC points), and the key's hash and
    # the doppelganger key are defined on what it writes (tests/test_der.py).
    spki_der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    extensions, problem = _extensions(cert)
    ca, path_len = _basic_constraints(cert, extensions)
    return CertInfo(
        sha256=sha256_hex(der),
        der=der,
        subject=subject.text,
        subject_der=subject.der,
        issuer=issuer.text,
        issuer_der=issuer.der,
        serial_hex=serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        spki_der=spki_der,
        spki_sha256=sha256_hex(spki_der),
        doppelganger_key=sha256_hex(subject.der + spki_der),
        tbs_sha256=sha256_hex(parts.tbs if parts else cert.tbs_certificate_bytes),
        ski=_ski(extensions),
        aki=_aki(extensions),
        is_ca=ca,
        path_len=path_len,
        ekus=_ekus(extensions),
        has_name_constraints=_ext(extensions, x509.NameConstraints) is not None,
        technically_constrained=_technically_constrained(extensions),
        crl_urls=_crl_urls(extensions),
        self_issued=subject.der == issuer.der,
        subject_organizations=subject.organizations,
        extensions_error=problem,
    )


def _parts(der: bytes) -> Parts | None:
    """The TBSCertificate and names as the DER holds them: `cryptography` re-encodes them for
    each ask (tbs_certificate_bytes alone took a sixth of a parse); None when the DER is not
    shaped as expected (never seen: cryptography loaded it), and `cryptography` is asked."""
    try:
        return certificate_parts(der)
    except ValueError:
        return None


class _Name(NamedTuple):
    text: str  # RFC 4514, as cryptography's rfc4514_string() spells it
    der: bytes
    organizations: tuple[str, ...]  # the organizationName values that are text


def _names(cert: x509.Certificate, parts: Parts | None) -> tuple[_Name, _Name]:
    """The issuer's and the subject's name: read from the DER where agent.model.names reads
    them (most CA certificates; a sixth of the parse when cryptography builds them), else from
    cryptography's objects. Both ways give the same values (tests/test_names.py)."""
    if parts is None:  # cryptography loaded it: not expected, but its own reading decides
        return _by_cryptography(cert.issuer), _by_cryptography(cert.subject)
    return _name(parts.issuer, lambda: cert.issuer), _name(parts.subject, lambda: cert.subject)


# Names read, by their DER: an issuer's name is the subject of another certificate and the
# issuer of its siblings, so most names of an inventory are met more than once.
_NAMES: Kept[bytes, _Name] = Kept(16384)


def forget_names() -> None:
    """Read every name afresh from now on (benchmarks time each run from nothing)."""
    _NAMES.clear()


def _name(der: bytes, objects: Callable[[], x509.Name]) -> _Name:
    known = _NAMES.get(der)
    if known is not None:
        return known
    read = name_text(der)
    if read is None:
        return _by_cryptography(objects())
    return _NAMES.keep(der, _Name(read[0], der, read[1]))


def _by_cryptography(name: x509.Name) -> _Name:
    return _Name(name.rfc4514_string(), name.public_bytes(), _organizations(name))


def _organizations(name: x509.Name) -> tuple[str, ...]:
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return tuple(v.value for v in values if isinstance(v.value, str))


# Each extension's value by its class: looked up seven times a certificate, which
# Extensions.get_extension_for_class does by a scan each time.
_Values = Mapping[type[x509.ExtensionType], x509.ExtensionType]


def _extensions(cert: x509.Certificate) -> tuple[_Values, str]:
    """All extensions, decoded once, by class (the first of a class, as
    get_extension_for_class finds it); none and the reason when they cannot be decoded."""
    try:
        values: dict[type[x509.ExtensionType], x509.ExtensionType] = {}
        for extension in cert.extensions:
            values.setdefault(type(extension.value), extension.value)
        return values, ""
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        return {}, str(e) or type(e).__name__


def serial_hex(serial: int) -> str:
    """A serial number as invsync spells it: the DER INTEGER content bytes, uppercase hex."""
    # The DER INTEGER content: two's complement, so a high first bit gets a leading zero byte.
    length = serial.bit_length() // 8 + 1
    return serial.to_bytes(length, "big", signed=True).hex().upper()


def _ext(extensions: _Values, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    return extensions.get(kind)


def ca_flag(cert: x509.Certificate) -> bool:
    """basicConstraints cA exactly as `parse_certificate` derives `is_ca`, without the rest."""
    return _basic_constraints(cert, _extensions(cert)[0])[0]


def _basic_constraints(cert: x509.Certificate, extensions: _Values) -> tuple[bool, int | None]:
    bc = _ext(extensions, x509.BasicConstraints)
    if isinstance(bc, x509.BasicConstraints):
        return bc.ca, bc.path_length
    if len(extensions) == 0:
        # Extensions cryptography refused (or none at all): read the CA flag from the DER.
        try:
            return basic_constraints(cert.tbs_certificate_bytes)
        except ValueError:
            return False, None
    return False, None


def _ski(extensions: _Values) -> str | None:
    ski = _ext(extensions, x509.SubjectKeyIdentifier)
    return ski.digest.hex().upper() if isinstance(ski, x509.SubjectKeyIdentifier) else None


def _aki(extensions: _Values) -> str | None:
    aki = _ext(extensions, x509.AuthorityKeyIdentifier)
    if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier is not None:
        return aki.key_identifier.hex().upper()
    return None


def _ekus(extensions: _Values) -> tuple[str, ...]:
    eku = _ext(extensions, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage):
        return ()
    return tuple(sorted(oid.dotted_string for oid in eku))


def _technically_constrained(extensions: _Values) -> bool:
    """Mozilla Root Store Policy 5.3.1: an EKU extension without anyExtendedKeyUsage; if it
    allows serverAuth, name constraints on both dNSName and iPAddress; if it allows
    emailProtection, name constraints on rfc822Name. Such a CA certificate is exempt from the
    audit and disclosure rules that apply to unconstrained ones."""
    eku = _ext(extensions, x509.ExtendedKeyUsage)
    if not isinstance(eku, x509.ExtendedKeyUsage):
        return False
    usages = set(eku)
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages:
        return False
    constrained = _constrained_name_types(extensions)
    needed: set[type] = set()
    if ExtendedKeyUsageOID.SERVER_AUTH in usages:
        needed |= {x509.DNSName, x509.IPAddress}
    if ExtendedKeyUsageOID.EMAIL_PROTECTION in usages:
        needed.add(x509.RFC822Name)
    return needed <= constrained


def _constrained_name_types(extensions: _Values) -> set[type]:
    nc = _ext(extensions, x509.NameConstraints)
    if not isinstance(nc, x509.NameConstraints):
        return set()
    subtrees = [*(nc.permitted_subtrees or ()), *(nc.excluded_subtrees or ())]
    return {type(name) for name in subtrees}


def _crl_urls(extensions: _Values) -> tuple[str, ...]:
    cdp = _ext(extensions, x509.CRLDistributionPoints)
    if not isinstance(cdp, x509.CRLDistributionPoints):
        return ()
    urls = [
        name.value
        for point in cdp
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
    ]
    return tuple(urls)


SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH.dotted_string


# A record's SHA-256 (`CertRecord.sha256`) read in C, without a Python call per record: for the
# sort keys and maps of the passes over every record of a collection or snapshot (issue 13).
SHA256_OF = attrgetter("info.sha256")
