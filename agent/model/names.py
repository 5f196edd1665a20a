"""A certificate's names read straight from their DER, as `cryptography` would spell them.

`cryptography` builds a Python object for every attribute of a name before it can format it.
For a CA certificate that was about a sixth of parsing it: a parse takes 53 us instead of 63
when the names are read here (issue 13). Almost every name in a CA certificate is a sequence
of single-valued RDNs holding UTF8String, PrintableString or IA5String text, and for those
the RFC 4514 string and the organizationName values are read here from the bytes. Anything
else (multi-valued RDNs, other string types, text outside its type's alphabet) is answered
None, and the caller asks `cryptography`: this module never decides a name `cryptography`
would spell differently. tests/test_names.py holds both ways equal on every real certificate
in the fixtures and on generated names.

Only DER that `cryptography` already loaded as a certificate is read here, so its structure
has been checked; a shape this module does not expect is still answered None, never raised.
"""

from __future__ import annotations

from invsync.agent.kept import Kept

_SEQUENCE = 0x30
_SET = 0x31
_OID = 0x06
# The string types read here, with how their bytes become text; any other type is left to
# `cryptography`.
_UTF8 = 0x0C
_PRINTABLE = 0x13
_IA5 = 0x16
# X.680's PrintableString alphabet: text of that type with any other character is left to
# `cryptography`, which decides itself whether it accepts it.
_PRINTABLE_ALPHABET = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)

# RFC 4514's short names, as `cryptography` uses them; any other type is its dotted OID.
_SHORT_NAMES = {
    bytes.fromhex("550403"): "CN",
    bytes.fromhex("550407"): "L",
    bytes.fromhex("550408"): "ST",
    bytes.fromhex("55040a"): "O",
    bytes.fromhex("55040b"): "OU",
    bytes.fromhex("550406"): "C",
    bytes.fromhex("550409"): "STREET",
    bytes.fromhex("0992268993f22c640119"): "DC",
    bytes.fromhex("0992268993f22c640101"): "UID",
}
_ORGANIZATION = bytes.fromhex("55040a")

# The largest OID and arc `cryptography` decodes (rust-asn1's limits).
_MOST_OID_BYTES = 63
_ARC_LIMIT = 1 << 128

# Attribute types by their OID bytes: a few dozen in any inventory.
_TYPES: Kept[bytes, str] = Kept(4096)

# RFC 4514 section 2.4's characters escaped with a backslash anywhere in a value.
_ESCAPED = str.maketrans(
    {c: "\\" + c for c in '\\"+,;<>'} | {"\0": "\\00"},
)


def name_text(name: bytes) -> tuple[str, tuple[str, ...]] | None:
    """The RFC 4514 string of the Name element `name` (tag and length included) and its
    organizationName values, as `cryptography` gives them; None outside what this module reads."""
    body = _body(name, 0, _SEQUENCE)
    if body is None or body[1] != len(name):
        return None
    at, end = body
    spelled: list[str] = []
    organizations: list[str] = []
    while at < end:
        attribute = _attribute(name, at)
        if attribute is None:
            return None
        oid, value, at = attribute
        kind = _type_name(oid)
        if kind is None:
            return None
        spelled.append(f"{kind}={_escape(value)}")
        if oid == _ORGANIZATION:
            organizations.append(value)
    spelled.reverse()  # RFC 4514 writes the last RDN first
    return ",".join(spelled), tuple(organizations)


def _attribute(data: bytes, at: int) -> tuple[bytes, str, int] | None:
    """(type OID bytes, text, end) of the single-valued RDN at `at`, or None."""
    rdn = _body(data, at, _SET)
    if rdn is None:
        return None
    start, end = rdn
    pair = _body(data, start, _SEQUENCE)
    if pair is None or pair[1] != end:  # more than one attribute in the RDN
        return None
    oid = _body(data, pair[0], _OID)
    if oid is None:
        return None
    value_at = oid[1]
    if value_at + 2 > end:
        return None
    tag = data[value_at]
    text = _body(data, value_at, tag)
    if text is None or text[1] != end:
        return None
    decoded = _text(tag, data[text[0] : text[1]])
    if decoded is None:
        return None
    return data[oid[0] : oid[1]], decoded, end


def _body(data: bytes, at: int, tag: int) -> tuple[int, int] | None:
    """(start, end) of the content of the element at `at` if it has `tag`, else None."""
    if at + 2 > len(data) or data[at] != tag:
        return None
    length = data[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 3 or at + count > len(data) or data[at] == 0:
            return None
        length = int.from_bytes(data[at : at + count], "big")
        at += count
        if length < 0x80:  # DER writes it in the short form
            return None
    end = at + length
    return (at, end) if end <= len(data) else None


def _text(tag: int, raw: bytes) -> str | None:
    if tag == _UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if tag == _PRINTABLE:
        return raw.decode("ascii") if _PRINTABLE_ALPHABET.issuperset(raw) else None
    if tag == _IA5:
        return raw.decode("ascii") if raw.isascii() else None
    return None


def _type_name(oid: bytes) -> str | None:
    known = _TYPES.get(oid)
    if known is not None:
        return known
    made = _SHORT_NAMES.get(oid) or _dotted(oid)
    return None if made is None else _TYPES.keep(oid, made)


def _dotted(oid: bytes) -> str | None:
    """The dotted form of an OID's content bytes; None for an encoding that is not minimal, or
    an OID `cryptography` refuses (over 63 bytes, or an arc of 2**128 or more)."""
    if len(oid) > _MOST_OID_BYTES:
        return None
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in oid:
        if fresh and byte == 0x80:
            return None  # a leading zero septet: not DER
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    if not arcs or not fresh or max(arcs) >= _ARC_LIMIT:
        return None
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def _escape(value: str) -> str:
    """RFC 4514 section 2.4, the way `cryptography` applies it."""
    if not value:
        return ""
    value = value.translate(_ESCAPED)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value
