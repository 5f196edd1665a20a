"""Certificate names as an incident report's reader wants them: "JPRS Domain Validation
Authority - G3 (Japan Registry Services Co., Ltd.)" instead of the RFC 4514 text
`CN=JPRS Domain Validation Authority - G3,O=Japan Registry Services Co.\\, Ltd.,C=JP`.

The text comes from a certificate, so anything can be in it: nothing here raises on any input,
and what it returns is still attacker-controlled text that the renderer escapes.
"""

from __future__ import annotations

from invsync.agent.report.render.names import LOOKS_LIKE_ATTRIBUTE, attributes, readable_dn

SHORT = 16  # hex digits of a SHA-256 shown where the full one is in the appendix


def readable_name(rfc4514: str) -> str:
    """The common name (or else the organizational unit), with the organization in parentheses
    when there is one; the text as given when it names none of them. A value that would read
    as another attribute once unescaped (`CN=Evil\\, O=Google`) gives the whole name, readable
    where that cannot mislead (`readable_dn`), so no certificate passes for another's."""
    named = _attributes(rfc4514)
    common = named.get("CN") or named.get("OU", "")
    organization = named.get("O", "")
    if any(LOOKS_LIKE_ATTRIBUTE.search(value) for value in (common, organization)):
        return readable_dn(rfc4514)
    if common and organization and organization not in common:
        return f"{common} ({organization})"
    return common or organization or rfc4514


def short(sha256: str) -> str:
    return sha256[:SHORT]


def _attributes(rfc4514: str) -> dict[str, str]:
    """Each attribute type's first value, unescaped; {} for text that is not a DN."""
    try:
        pairs = attributes(rfc4514)
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for kind, value in pairs:
        found.setdefault(kind.strip().upper(), value.strip())
    return found
