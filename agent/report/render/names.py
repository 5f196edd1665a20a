"""Distinguished names as people read them, from the RFC 4514 text a report carries.

RFC 4514 backslash-escapes `,` `+` `"` `\\` `<` `>` `;` (and a leading `#` or space), so JPRS's
organization reads `O=Japan Registry Services Co.\\, Ltd.`: exact, and hard to read, worse still
once Markdown escapes the backslash again. `readable_dn` splits the name at its unescaped
separators and unescapes each value: `CN=JPRS ..., O=Japan Registry Services Co., Ltd., C=JP`.

Subjects are attacker-controlled, and an unescaped comma could make one attribute pass for two
(`CN=evil\\, O=Google` must not read as an `O=Google` name). A value that would read as more
attributes (a `,` or `+` followed by something like `O=`) keeps its escapes. Renderings keep the
exact RFC 4514 text beside the readable one (an HTML title, the CSV's columns).
"""

from __future__ import annotations

import re

# After a separator, what would read as the start of another attribute: `O=`, ` 2.5.4.3=`.
LOOKS_LIKE_ATTRIBUTE = re.compile(r"[,+;]\s*[A-Za-z0-9][A-Za-z0-9.-]*\s*=")
_HEX = frozenset("0123456789abcdefABCDEF")


def readable_dn(rfc4514: str) -> str:
    """`rfc4514` with its escapes removed where that cannot mislead; RDNs joined by ", ",
    attributes of one RDN by " + ". Text that is not valid RFC 4514 is returned unchanged."""
    try:
        rdns = [_split(rdn, "+") for rdn in _split(rfc4514, ",")]
        return ", ".join(" + ".join(_readable_attribute(a) for a in rdn) for rdn in rdns)
    except ValueError:
        return rfc4514


def _split(text: str, separator: str) -> list[str]:
    """`text` split at each `separator` that no backslash escapes; escapes kept."""
    parts, start, index = [], 0, 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    if index > len(text):
        raise ValueError("a backslash ends the name")
    parts.append(text[start:])
    return parts


def attributes(rfc4514: str) -> list[tuple[str, str]]:
    """Each attribute's type and unescaped value, in the name's order; ValueError for text
    that is not RFC 4514."""
    pairs = [_kind_value(a) for rdn in _split(rfc4514, ",") for a in _split(rdn, "+")]
    return [(kind, _unescape(value)) for kind, value in pairs]


def _kind_value(attribute: str) -> tuple[str, str]:
    kind, equals, value = attribute.partition("=")
    if not equals:
        raise ValueError(f"no '=' in attribute {attribute!r}")
    return kind, value


def _readable_attribute(attribute: str) -> str:
    kind, value = _kind_value(attribute)
    plain = _unescape(value)
    return f"{kind}={value if LOOKS_LIKE_ATTRIBUTE.search(plain) else plain}"


def _unescape(value: str) -> str:
    """RFC 4514 §3's value escapes undone: `\\c` is c, `\\hh` a byte of UTF-8."""
    out, index = bytearray(), 0
    while index < len(value):
        char, pair = value[index], value[index + 1 : index + 3]
        if char != "\\":
            out += char.encode()
            index += 1
        elif len(pair) == 2 and set(pair) <= _HEX:
            out.append(int(pair, 16))
            index += 3
        elif pair:
            out += pair[0].encode()
            index += 2
        else:
            raise ValueError("a backslash ends the value")
    return out.decode("utf-8", errors="replace")
