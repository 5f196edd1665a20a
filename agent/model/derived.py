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
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

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
FORMAT = f"1 cryptography {cryptography.__version__} derivation {_DERIVATION}"

T = TypeVar("T")


class _Unusable(Exception):
    """A stored value this process does not take: the certificate is parsed again."""


def facts_json(info: CertInfo) -> str:
    """`info` as stored: every field but the DER, beside the FORMAT."""
    facts: dict[str, object] = {
        "format": FORMAT,
        **{f.name: getattr(info, f.name) for f in fields(info)},
    }
    del facts["der"]
    for name in _TIMES:
        facts[name] = getattr(info, name).isoformat()
    for name in _DATA:
        facts[name] = _slice_of(getattr(info, name), info.der)
    return json.dumps(facts, separators=(",", ":"))  # tuples of text become lists


def info_from_json(stored: object, sha256: str, der: bytes) -> CertInfo | None:
    """The CertInfo of `der` (whose SHA-256 is `sha256`) rebuilt from its stored facts; None
    when they are not JSON text, have another FORMAT, or are another certificate's."""
    if not isinstance(stored, str | bytes):
        return None
    try:
        doc = json.loads(stored)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("sha256") != sha256:
            return None
        return _info(doc, der, sha256)
    except (_Unusable, KeyError, ValueError, RecursionError):  # base64's binascii.Error too
        return None  # a cache row is never worth an error: the DER is parsed again instead


def _slice_of(value: bytes, der: bytes) -> object:
    at = der.find(value)
    # Found, it is those bytes of the DER whatever their role there; a name cryptography
    # re-encoded differently is not found and is stored whole.
    return [at, len(value)] if at >= 0 else base64.b64encode(value).decode()


# Each CertInfo field but `sha256` and `der` by how it is stored. A row is checked field by
# field with exact types (JSON gives nothing else; bool is no int here): a process rebuilds
# every certificate it holds from these, so this is the steady cycle's inner loop.
_TEXTS = (
    "subject", "issuer", "serial_hex", "spki_sha256", "doppelganger_key", "tbs_sha256",
    "extensions_error",
)  # fmt: skip
_MAYBE_TEXTS = ("ski", "aki")
_FLAGS = ("is_ca", "has_name_constraints", "technically_constrained", "self_issued")
_DATA = ("subject_der", "issuer_der", "spki_der")
_TIMES = ("not_before", "not_after")
_LISTS = ("ekus", "crl_urls", "subject_organizations")


def _info(doc: dict[str, Any], der: bytes, sha256: str) -> CertInfo:
    values: dict[str, Any] = {"sha256": sha256, "der": der}
    for name in _TEXTS:
        values[name] = _exactly(doc[name], str, name)
    for name in _MAYBE_TEXTS:
        value = values[name] = doc[name]
        if value is not None and type(value) is not str:
            raise _Unusable(name)
    for name in _FLAGS:
        values[name] = _exactly(doc[name], bool, name)
    path_len = values["path_len"] = doc["path_len"]
    if path_len is not None and type(path_len) is not int:
        raise _Unusable("path_len")
    for name in _LISTS:
        items = _exactly(doc[name], list, name)
        if not all(type(item) is str for item in items):
            raise _Unusable(name)
        values[name] = tuple(items)
    for name in _TIMES:
        values[name] = _time(_exactly(doc[name], str, name), name)
    for name in _DATA:
        values[name] = _data(doc[name], der, name)
    return CertInfo(**values)


_UTC_OFFSET = timedelta(0)


def _time(text: str, name: str) -> datetime:
    at = datetime.fromisoformat(text)
    if at.utcoffset() != _UTC_OFFSET:
        raise _Unusable(name)  # CertInfo times are UTC (and a naive one has no offset)
    return at


def _data(value: object, der: bytes, name: str) -> bytes:
    if type(value) is str:
        return base64.b64decode(value, validate=True)
    if type(value) is not list or len(value) != 2:
        raise _Unusable(name)
    at, length = value
    if type(at) is not int or type(length) is not int or not 0 <= at <= at + length <= len(der):
        raise _Unusable(name)
    return der[at : at + length]


def _exactly(value: object, kind: type[T], name: str) -> T:
    if type(value) is not kind:
        raise _Unusable(f"{name}: {kind.__name__} expected")
    return value
