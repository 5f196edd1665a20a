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
from typing import Any, TypeVar

import cryptography

from invsync.agent.model import der, record
from invsync.agent.model.record import CertInfo

# Facts are what this encoding, this `cryptography` and this derivation code derive: another
# release may spell a name or refuse an extension differently, and a change to how invsync
# derives a field (record.py, der.py) changes what a rule sees, so facts any other one wrote
# are derived again. The agents' facts must be the server's, which parses afresh.
_DERIVATION = hashlib.sha256(
    b"".join(Path(module.__file__ or "").read_bytes() for module in (record, der))
).hexdigest()[:16]
FORMAT = f"1 cryptography {cryptography.__version__} derivation {_DERIVATION}"

T = TypeVar("T")


class _Unusable(Exception):
    """A stored value this process does not take: the certificate is parsed again."""


def facts_json(info: CertInfo) -> str:
    """`info` as stored: every field but the DER, beside the FORMAT."""
    facts = {name: _encoded(value, info.der) for name, value in vars(info).items()}
    del facts["der"]
    return json.dumps({"format": FORMAT, **facts}, separators=(",", ":"))


def info_from_json(stored: object, sha256: str, der: bytes) -> CertInfo | None:
    """The CertInfo of `der` (whose SHA-256 is `sha256`) rebuilt from its stored facts; None
    when they are not JSON text, have another FORMAT, or are another certificate's."""
    if not isinstance(stored, str | bytes):
        return None
    try:
        doc = json.loads(stored)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("sha256") != sha256:
            return None
        return _info(_Facts(doc, der), sha256)
    except (_Unusable, KeyError, ValueError, RecursionError):  # base64's binascii.Error too
        return None  # a cache row is never worth an error: the DER is parsed again instead


def _encoded(value: object, der: bytes) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        at = der.find(value)
        # Found, it is those bytes of the DER whatever their role there; a name cryptography
        # re-encoded differently is not found and is stored whole.
        return [at, len(value)] if at >= 0 else base64.b64encode(value).decode()
    return value  # str, bool, int, None, and tuples of str (JSON lists)


def _info(facts: _Facts, sha256: str) -> CertInfo:
    return CertInfo(
        sha256=sha256,
        der=facts.der,
        subject=facts.text("subject"),
        subject_der=facts.data("subject_der"),
        issuer=facts.text("issuer"),
        issuer_der=facts.data("issuer_der"),
        serial_hex=facts.text("serial_hex"),
        not_before=facts.time("not_before"),
        not_after=facts.time("not_after"),
        spki_der=facts.data("spki_der"),
        spki_sha256=facts.text("spki_sha256"),
        doppelganger_key=facts.text("doppelganger_key"),
        tbs_sha256=facts.text("tbs_sha256"),
        ski=facts.maybe_text("ski"),
        aki=facts.maybe_text("aki"),
        is_ca=facts.flag("is_ca"),
        path_len=facts.maybe_count("path_len"),
        ekus=facts.texts("ekus"),
        has_name_constraints=facts.flag("has_name_constraints"),
        technically_constrained=facts.flag("technically_constrained"),
        crl_urls=facts.texts("crl_urls"),
        self_issued=facts.flag("self_issued"),
        extensions_error=facts.text("extensions_error"),
    )


class _Facts:
    """One stored row's values by field name, each read as its type or `_Unusable`."""

    def __init__(self, doc: dict[str, Any], der: bytes) -> None:
        self.doc = doc
        self.der = der

    def text(self, name: str) -> str:
        return _checked(self.doc[name], str)

    def maybe_text(self, name: str) -> str | None:
        return None if self.doc[name] is None else self.text(name)

    def flag(self, name: str) -> bool:
        return _checked(self.doc[name], bool)

    def maybe_count(self, name: str) -> int | None:
        value = self.doc[name]
        # bool is an int to Python, not to a path length.
        return None if value is None else _checked(value, int, bool)

    def texts(self, name: str) -> tuple[str, ...]:
        return tuple(_checked(item, str) for item in _checked(self.doc[name], list))

    def time(self, name: str) -> datetime:
        at = datetime.fromisoformat(self.text(name))
        if at.utcoffset() != timedelta(0):
            raise _Unusable(name)  # CertInfo times are UTC (and a naive one has no offset)
        return at

    def data(self, name: str) -> bytes:
        value = self.doc[name]
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
        at, length = (_checked(v, int, bool) for v in _checked(value, list))
        if not 0 <= at <= at + length <= len(self.der):
            raise _Unusable(name)
        return self.der[at : at + length]


def _checked(value: object, kind: type[T], but: type | None = None) -> T:
    if not isinstance(value, kind) or (but is not None and isinstance(value, but)):
        raise _Unusable(f"{kind.__name__} expected")
    return value
