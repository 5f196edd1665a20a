"""Just enough DER for what `cryptography` would make a parse slower or less complete with.

- The parts of a certificate as the bytes it holds (TBSCertificate, names): the same bytes
  `cryptography` writes again when asked, without the cost of writing them. Not the public
  key: `cryptography` writes some keys otherwise than a certificate may hold them.
- basicConstraints, when `cryptography` refuses a certificate's other extensions (real CCADB
  certificates carry malformed policy text or name constraints): an inventory must still know
  whether such a certificate is a CA; everything else derived from extensions is left unknown.
- One element written (`element`): the federation CA assembles a certificate around a signature
  made outside `cryptography` (agent.exchange.ca_sign).
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from invsync.agent.errors import SourceError

_SEQUENCE = 0x30
_BOOLEAN = 0x01
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OID = 0x06
_EXTENSIONS = 0xA3  # [3] EXPLICIT in TBSCertificate
BASIC_CONSTRAINTS_OID = bytes([0x55, 0x1D, 0x13])  # 2.5.29.19


def _tlv(data: bytes, at: int) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the DER element at `at`; ValueError when truncated."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or at + count > len(data):
            raise ValueError("bad DER length")
        length, at = int.from_bytes(data[at : at + count], "big"), at + count
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[at : at + length], at + length


def element(tag: int, value: bytes) -> bytes:
    """The DER element of `tag` holding `value`, its length in the definite form `_tlv` reads."""
    size = len(value)
    if size < 0x80:
        return bytes([tag, size]) + value
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def _children(value: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at < len(value):
        tag, inner, at = _tlv(value, at)
        out.append((tag, inner))
    return out


def basic_constraints(tbs: bytes) -> tuple[bool, int | None]:
    """(cA, pathLenConstraint) from a TBSCertificate's raw extensions; (False, None) without
    the extension. ValueError when the DER itself is broken."""
    tag, body, _ = _tlv(tbs, 0)
    if tag != _SEQUENCE:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    for field_tag, field in _children(body):
        if field_tag == _EXTENSIONS:
            return _from_extensions(field)
    return False, None


def _from_extensions(explicit: bytes) -> tuple[bool, int | None]:
    _, extensions, _ = _tlv(explicit, 0)
    for _, extension in _children(extensions):
        parts = _children(extension)
        if parts and parts[0] == (_OID, BASIC_CONSTRAINTS_OID):
            return _decode_basic_constraints(parts[-1][1])
    return False, None


def _decode_basic_constraints(octets: bytes) -> tuple[bool, int | None]:
    _, body, _ = _tlv(octets, 0)
    ca, path_len = False, None
    for tag, value in _children(body):
        if tag == _BOOLEAN:
            ca = value != b"\x00"
        elif tag == _INTEGER:
            path_len = int.from_bytes(value, "big")
    return ca, path_len


def base64_bytes(text: str, where: str, what: str = "invalid base64") -> bytes:
    """Base64 text (a PEM body, a log's certificate field) to bytes, or a SourceError
    `{where}: {what} ({reason})`, `where` naming the file and line. Non-ASCII text is refused
    too: for it `b64decode` raises a plain ValueError, not binascii.Error."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        bad = [c for c in text if not c.isascii()]
        reason = f"non-ASCII character {bad[0]!r}" if bad else str(e)
        raise SourceError(f"{where}: {what} ({reason})") from e


_VERSION = 0xA0  # [0] EXPLICIT in TBSCertificate, absent for v1


class Parts(NamedTuple):
    """DER elements of a certificate (tag and length included), sliced without decoding them."""

    tbs: bytes  # the TBSCertificate: the bytes its signature covers
    issuer: bytes
    subject: bytes


def certificate_parts(certificate: bytes) -> Parts:
    """The TBSCertificate and the issuer's and the subject's Name of a certificate, as the
    bytes it holds. ValueError when the structure up to the subject is broken."""
    _, body, end = _expect(certificate, 0, _SEQUENCE, "Certificate")
    tbs_at = end - len(body)  # after the Certificate's tag and length
    _, tbs, tbs_end = _expect(body, 0, _SEQUENCE, "TBSCertificate")
    at = _tlv(tbs, 0)[2] if tbs[:1] == bytes([_VERSION]) else 0
    for _ in range(2):  # serialNumber, signature
        at = _tlv(tbs, at)[2]
    issuer_at = at
    _, _, at = _expect(tbs, at, _SEQUENCE, "issuer")
    issuer = tbs[issuer_at:at]
    _, _, at = _expect(tbs, at, _SEQUENCE, "validity")
    subject_at = at
    _, _, at = _expect(tbs, at, _SEQUENCE, "subject")
    whole_tbs = certificate[tbs_at : tbs_at + tbs_end]
    return Parts(whole_tbs, issuer, tbs[subject_at:at])


def _expect(data: bytes, at: int, tag: int, what: str) -> tuple[int, bytes, int]:
    found, value, end = _tlv(data, at)
    if found != tag:
        raise ValueError(f"{what} has tag {found:#04x}, not {tag:#04x}")
    return found, value, end
