"""CRLs (DER or PEM): revocations, as evidence, once the CRL's signature verifies (DESIGN §4).

A CRL counts only when an issuer key the party already knows (`SourceContext.issuers`) signed it:
candidates are the known CA certificates whose subject is the CRL's issuer name and, when both
say, whose subject key id is the CRL's authority key id; the signature over `tbs_certlist_bytes`
must verify with one of their keys. A CRL no known key signed is a SourceError naming the file and
the CRL's issuer.

SHA-1: old CRLs are signed with SHA-1, and `cryptography`'s `is_signature_valid()` refuses them
although their signatures are valid. We verify the signature ourselves with the CRL's own hash,
SHA-1 included, because a CRL is evidence of revocation and refusing an old one would hide a
revocation; every entry records `crl_signature_hash` so that a report can say the evidence is
SHA-1 signed. See docs/sources-crl-audit.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import CrlRevocation, Skipped
from invsync.agent.model.record import DECODE_ERRORS, CertInfo, serial_hex
from invsync.agent.model.signatures import signature_verifies
from invsync.agent.sources.reading import read_bytes

CRL = "crl"
PROGRESS_EVERY = 1000

_PEM_BEGIN = b"-----BEGIN X509 CRL-----"
# Ed25519 and Ed448 signatures name no separate hash; the algorithm stands for it.
_HASHLESS = {"1.3.101.112": "ed25519", "1.3.101.113": "ed448"}


def load_crl(path: Path, ctx: SourceContext) -> Facts:
    """Every revoked entry of a CRL file whose signature a known issuer key verifies.

    `cryptography` decodes a CRL lazily, so hostile DER raises (ValueError, TypeError,
    InvalidVersion, UnsupportedGeneralNameType...) from any accessor; only SourceError naming the
    file leaves here."""
    data = read_bytes(path)
    try:
        return _load(path, data, ctx)
    except SourceError:
        raise
    except DECODE_ERRORS as e:
        raise SourceError(f"{path}: CRL cannot be decoded: {type(e).__name__}: {e}") from e


def _load(path: Path, data: bytes, ctx: SourceContext) -> Facts:
    crl = _parse(path, data)
    issuer = _signer(path, crl, ctx.issuers)
    hash_name = _signature_hash(crl)
    revocations: list[CrlRevocation] = []
    skipped: list[Skipped] = []
    total = len(crl)
    for index, entry in enumerate(_entries(path, crl), 1):
        where = f"{path}#{index}"
        try:
            revocation = _revocation(entry, issuer, f"{CRL}:{where}", hash_name)
        except SourceError as e:
            if not ctx.skip_invalid:
                raise
            skipped.append(Skipped(where, str(e).removeprefix(f"{where}: ")))
            continue
        if revocation is not None:
            revocations.append(revocation)
        if index % PROGRESS_EVERY == 0:
            ctx.progress(index, total)
    ctx.progress(total, total)
    return Facts(crl_revocations=tuple(revocations), skipped=tuple(skipped))


def _parse(path: Path, data: bytes) -> x509.CertificateRevocationList:
    if not data:
        raise SourceError(f"{path}: file is empty, no CRL found")
    pem = data.lstrip().startswith(_PEM_BEGIN)
    if pem and data.count(_PEM_BEGIN) > 1:
        # One CRL a file keeps "crl:<path>#<entry>" unambiguous.
        raise SourceError(f"{path}: holds {data.count(_PEM_BEGIN)} PEM CRLs; give one a file")
    try:
        return x509.load_pem_x509_crl(data) if pem else x509.load_der_x509_crl(data)
    except ValueError as e:
        raise SourceError(f"{path}: not a {'PEM' if pem else 'DER'} CRL: {e}") from e


def _signer(
    path: Path, crl: x509.CertificateRevocationList, issuers: Sequence[CertInfo]
) -> CertInfo:
    """The known CA certificate whose key signed `crl`."""
    name = crl.issuer.rfc4514_string()
    candidates = _candidates(crl, issuers)
    if not candidates:
        raise SourceError(
            f"{path}: no known CA certificate is the CRL's issuer {name}"
            f"{_aki_note(crl)}; import the issuer's certificate first"
        )
    for candidate in candidates:
        key = serialization.load_der_public_key(candidate.spki_der)
        if signature_verifies(
            key,
            crl.signature,
            crl.tbs_certlist_bytes,
            crl.signature_algorithm_parameters,
            crl.signature_hash_algorithm,
        ):
            return candidate
    raise SourceError(
        f"{path}: CRL signature does not verify with the key of any of the {len(candidates)}"
        f" known CA certificate(s) named {name}; the CRL was altered or another key signed it"
    )


def _candidates(crl: x509.CertificateRevocationList, issuers: Sequence[CertInfo]) -> list[CertInfo]:
    issuer_der = crl.issuer.public_bytes()
    aki = _aki(crl)
    return [
        info
        for info in issuers
        if info.subject_der == issuer_der and (aki is None or info.ski is None or info.ski == aki)
    ]


def _aki(crl: x509.CertificateRevocationList) -> str | None:
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return aki.key_identifier.hex().upper() if aki.key_identifier is not None else None


def _aki_note(crl: x509.CertificateRevocationList) -> str:
    aki = _aki(crl)
    return f" with key id {aki}" if aki else ""


def _signature_hash(crl: x509.CertificateRevocationList) -> str:
    digest = crl.signature_hash_algorithm
    if digest is not None:
        return digest.name
    oid = crl.signature_algorithm_oid.dotted_string
    return _HASHLESS.get(oid, oid)


def _entries(path: Path, crl: x509.CertificateRevocationList) -> Iterator[x509.RevokedCertificate]:
    try:
        yield from crl
    except DECODE_ERRORS as e:  # the entry list itself is not DER; no entry after it can be read
        raise SourceError(f"{path}: CRL entries cannot be parsed: {e}") from e


def _revocation(
    entry: x509.RevokedCertificate, issuer: CertInfo, source: str, hash_name: str
) -> CrlRevocation | None:
    """The revocation an entry states, or None for a delta CRL's removeFromCRL (not revoked)."""
    where = source.removeprefix(f"{CRL}:")
    try:
        extensions = entry.extensions
        reason = _reason(extensions)
        indirect = _has(extensions, x509.CertificateIssuer)
    except DECODE_ERRORS as e:
        raise SourceError(f"{where}: CRL entry cannot be parsed: {e or type(e).__name__}") from e
    if indirect:
        # Of an indirect CRL: the serial is another CA's, whose key did not sign this CRL.
        raise SourceError(f"{where}: CRL entry names another certificate issuer (indirect CRL)")
    if reason == x509.ReasonFlags.remove_from_crl.value:
        return None
    return CrlRevocation(
        issuer_spki_sha256=issuer.spki_sha256,
        serial_hex=serial_hex(entry.serial_number),
        revoked_at=entry.revocation_date_utc,
        reason=reason,
        source=source,
        crl_signature_hash=hash_name,
    )


def _reason(extensions: x509.Extensions) -> str:
    try:
        return extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return ""


def _has(extensions: x509.Extensions, kind: type[x509.ExtensionType]) -> bool:
    try:
        extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True
