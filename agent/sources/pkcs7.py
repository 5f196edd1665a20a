"""PKCS#7 certificate bundles (`.p7b`, `.p7c`): the "certs-only" SignedData a CA repository or
Windows exports, PEM-armored (`-----BEGIN PKCS7-----`) or DER.

A bundle that cannot be read, or holds no certificate, is an error naming the file; a certificate
inside it that `cryptography` cannot parse is an error naming the file and its position (1-based),
or a Skipped entry with --skip-invalid.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertRecord, SourceRef, parse_certificate
from invsync.agent.sources.detect import PKCS7
from invsync.agent.sources.reading import read_bytes
from invsync.agent.sources.tabular import RowError, Tally, collect

# OpenSSL writes "PKCS7"; RFC 7468 also allows "PKCS #7 SIGNED DATA", which cryptography refuses.
_LONG_LABEL = re.compile(rb"^(-----(?:BEGIN|END) )PKCS #7 SIGNED DATA-----", re.MULTILINE)

log = logging.getLogger("invsync.agent")


def load_pkcs7(path: Path, ctx: SourceContext) -> Facts:
    """Every certificate of a PKCS#7 bundle, in bundle order."""
    certificates = _certificates(path, read_bytes(path))
    entries = ((f"{path}: certificate {n}", (n, c)) for n, c in enumerate(certificates, 1))
    tally = Tally(ctx.progress)
    records, skipped = collect(entries, lambda entry: _record(path, *entry, ctx), ctx, tally)
    tally.finish()
    return Facts(records=tuple(records), skipped=tuple(skipped))


def _certificates(path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        certificates = _der_or_ber(path, data)
    except ValueError as e:
        # cryptography refuses a well-formed bundle without certificates with a ValueError too.
        if "no certificate" in str(e):
            certificates = []
        else:
            raise SourceError(f"{path}: not a PKCS#7 certificate bundle: {e}") from e
    except (UnsupportedAlgorithm, x509.InvalidVersion) as e:
        # Both found by fuzzing: a structure other than SignedData, and a certificate inside
        # whose X.509 version is not one cryptography knows.
        raise SourceError(f"{path}: not a PKCS#7 certificate bundle: {e}") from e
    if not certificates:
        raise SourceError(f"{path}: PKCS#7 bundle holds no certificate")
    return certificates


def _der_or_ber(path: Path, data: bytes) -> list[x509.Certificate]:
    """A bundle's certificates, PEM-armored or binary. One that is not DER (BER's indefinite
    lengths, or bytes after the bundle, found by fuzzing) is read as BER, as `cryptography`
    does, and said so in a log line naming the file instead of its UserWarning naming our
    code."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if b"-----BEGIN" in data:
            certificates = pkcs7.load_pem_pkcs7_certificates(
                _LONG_LABEL.sub(rb"\1PKCS7-----", data)
            )
        else:
            certificates = pkcs7.load_der_pkcs7_certificates(data)
    for warning in caught:
        if issubclass(warning.category, UserWarning) and "BER" in str(warning.message):
            log.warning("%s: PKCS#7 bundle is not DER, read as BER (%s)", path, warning.message)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return certificates


def _record(path: Path, number: int, cert: x509.Certificate, ctx: SourceContext) -> CertRecord:
    # Re-parsed from DER so that every field comes from the one parser of agent.model.record.
    der = cert.public_bytes(serialization.Encoding.DER)
    try:
        info = parse_certificate(der)
    except ValueError as e:
        raise RowError(f"{path}: certificate {number}", f"cannot be parsed: {e}") from e
    return CertRecord(info, sources=(SourceRef(PKCS7, str(path), ctx.now, ctx.now),))
