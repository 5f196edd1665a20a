"""A `CertInfo` as stored facts: JSON an agent keeps by the certificate's SHA-256, so that a
later process rebuilds the CertInfo from the DER it holds without parsing it (issue 13).

Safe to read whatever a row holds: plain JSON, every value's type checked, byte strings as a
slice of the DER (names and key are not stored twice) or, when not found in it, as base64.
A row that does not decode, was written by another format or parser, or names another
certificate gives None, and the certificate is parsed again: a cache, never a source.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cryptography

from invsync.agent.model import der, names, record
from invsync.agent.model.record import CertInfo

# Facts are what this encoding, this `cryptography` and this derivation code derive: another
# release may spell a name or refuse an extension differently, and a change to how invsync
# derives a field (record.py, der.py) changes what a rule sees, so facts any other one wrote
# are derived again. The agents' facts must be the server's, which parses afresh.
_DERIVATION = hashlib.sha256(
    b"".join(Path(module.__file__ or "").read_bytes() for module in (record, der, names))
).hexdigest()[:16]
FORMAT = f"2 cryptography {cryptography.__version__} derivation {_DERIVATION}"


class _Unusable(Exception):
    """A stored value this process does not take: the certificate is parsed again."""


def facts_json(info: CertInfo) -> str:
    """`info` as stored: a JSON array of the FORMAT and every field but the DER, in `STORED`
    order. An array, not an object: without the names a row is a third shorter and decodes
    in half the time (a fresh process rebuilds every certificate it holds from these)."""
    values: list[object] = [FORMAT, info.sha256]
    values += [getattr(info, name) for name in _AS_THEY_ARE]
    values += [getattr(info, name).isoformat() for name in _TIMES]
    values += [_slice_of(getattr(info, name), info.der) for name in _DATA]
    return json.dumps(values, separators=(",", ":"))  # tuples of text become lists


def info_from_json(stored: object, sha256: str, der: bytes) -> CertInfo | None:
    """The CertInfo of `der` (whose SHA-256 is `sha256`) rebuilt from its stored facts; None
    when they are not JSON text, have another FORMAT, or are another certificate's."""
    if not isinstance(stored, str | bytes):
        return None
    try:
        doc = json.loads(stored)
        if type(doc) is not list or len(doc) != len(STORED) + 1 or doc[:2] != [FORMAT, sha256]:
            return None
        return _info(doc, der)
    except (_Unusable, ValueError, RecursionError):  # base64's binascii.Error too
        return None  # a cache row is never worth an error: the DER is parsed again instead


def _slice_of(value: bytes, der: bytes) -> object:
    at = der.find(value)
    # Found, it is those bytes of the DER whatever their role there; a name cryptography
    # re-encoded differently is not found and is stored whole.
    return [at, len(value)] if at >= 0 else base64.b64encode(value).decode()


# Each CertInfo field but `sha256` and `der` by how it is stored. A row is checked field by
# field with exact types (JSON gives nothing else; bool is no int here): a process rebuilds
# every certificate it holds from these, so this is the steady cycle's inner loop, unrolled.
_TEXTS = (
    "subject", "issuer", "serial_hex", "spki_sha256", "doppelganger_key", "tbs_sha256",
    "extensions_error",
)  # fmt: skip
_MAYBE_TEXTS = ("ski", "aki")
_FLAGS = ("is_ca", "has_name_constraints", "technically_constrained", "self_issued")
_LISTS = ("ekus", "crl_urls", "subject_organizations")
_AS_THEY_ARE = (*_TEXTS, *_MAYBE_TEXTS, *_FLAGS, "path_len", *_LISTS)
_TIMES = ("not_before", "not_after")
_DATA = ("subject_der", "issuer_der", "spki_der")
# The fields of a stored row after its FORMAT, in order.
STORED = ("sha256", *_AS_THEY_ARE, *_TIMES, *_DATA)


def _info(doc: list[Any], der: bytes) -> CertInfo:
    """The CertInfo of a row (`STORED` after its FORMAT) and its DER, each value checked."""
    (sha256, subject, issuer, serial_hex, spki_sha256, doppelganger_key, tbs_sha256,
     extensions_error, ski, aki, is_ca, has_name_constraints, technically_constrained,
     self_issued, path_len, ekus, crl_urls, subject_organizations, not_before, not_after,
     subject_der, issuer_der, spki_der) = doc[1:]  # fmt: skip
    for text in (subject, issuer, serial_hex, spki_sha256, doppelganger_key, tbs_sha256,
                 extensions_error):  # fmt: skip
        if type(text) is not str:
            raise _Unusable("a text is not text")
    for key_id in (ski, aki):
        if key_id is not None and type(key_id) is not str:
            raise _Unusable("a key id is not text")
    for flag in (is_ca, has_name_constraints, technically_constrained, self_issued):
        if type(flag) is not bool:
            raise _Unusable("a flag is not a boolean")
    if path_len is not None and type(path_len) is not int:
        raise _Unusable("path_len is not a number")
    return CertInfo(
        sha256=sha256, der=der, subject=subject, subject_der=_data(subject_der, der),
        issuer=issuer, issuer_der=_data(issuer_der, der), serial_hex=serial_hex,
        not_before=_time(not_before), not_after=_time(not_after),
        spki_der=_data(spki_der, der), spki_sha256=spki_sha256,
        doppelganger_key=doppelganger_key, tbs_sha256=tbs_sha256, ski=ski, aki=aki,
        is_ca=is_ca, path_len=path_len, ekus=_texts(ekus),
        has_name_constraints=has_name_constraints,
        technically_constrained=technically_constrained, crl_urls=_texts(crl_urls),
        self_issued=self_issued, subject_organizations=_texts(subject_organizations),
        extensions_error=extensions_error,
    )  # fmt: skip


def _texts(items: object) -> tuple[str, ...]:
    if type(items) is not list:
        raise _Unusable("a list is not a list")
    for item in items:  # a loop, not all(): most lists are empty or of one
        if type(item) is not str:
            raise _Unusable("a list is not of text")
    return tuple(items)


_UTC_OFFSET = timedelta(0)


def _time(text: object) -> datetime:
    if type(text) is not str:
        raise _Unusable("a time is not text")
    at = datetime.fromisoformat(text)
    if at.utcoffset() != _UTC_OFFSET:
        raise _Unusable("a time is not UTC")  # CertInfo times are UTC (a naive one has none)
    return at


def _data(value: object, der: bytes) -> bytes:
    if type(value) is str:
        return base64.b64decode(value, validate=True)
    if type(value) is not list or len(value) != 2:
        raise _Unusable("bytes are neither base64 nor a slice")
    at, length = value
    if type(at) is not int or type(length) is not int or not 0 <= at <= at + length <= len(der):
        raise _Unusable("a slice is not of the DER")
    return der[at : at + length]
