"""The CT reader's fast path: only what `agent.sources.ct` needs of an entry, and nothing built
for the entries it drops, which are nearly all of a log (its speed: benchmarks/ct_reader.py).

`entry_certificate` checks an entry's RFC 6962 structure by offsets over its decoded bytes and
returns the certificate to check. It never words an error: an entry the offsets refuse is
decoded again by `ct_entries.decode_entry`, whose `EntryError` names the field, so both paths
refuse the same entries with the same words (tests/test_ct_fast.py holds them to it).

`may_be_ca` tells from a certificate's DER whether it can be a CA before `cryptography` reads
its extensions into Python objects (SCTs and all): a BasicConstraints extension's extnID has one DER
encoding, so a certificate without those bytes has none, and one whose only occurrence is
followed by an empty value says cA FALSE.
"""

from __future__ import annotations

import struct
from binascii import a2b_base64

from invsync.agent.sources.ct_entries import PRECERT_ENTRY, X509_ENTRY, decode_entry

_HEADER = struct.Struct(">HQH")  # version and leaf_type (v1 and timestamped_entry are both 0),
_HEADER_BYTES = _HEADER.size  # the timestamp, entry_type
_ISSUER_KEY_HASH_BYTES = 32
_BASIC_CONSTRAINTS_ID = bytes.fromhex("0603551d13")  # OBJECT IDENTIFIER 2.5.29.19
# What follows that extnID when the extension says cA FALSE (DER leaves out the default false,
# critical or cA): extnValue OCTET STRING { SEQUENCE {} }, without or after critical TRUE.
_NOT_CA = (bytes.fromhex("04023000"), bytes.fromhex("0101ff04023000"))


def entry_certificate(entry: object) -> tuple[bool, bytes]:
    """Whether the entry is a precert_entry, and the certificate to check: what
    `decode_entry(entry)` gives as `.precert` and `.certificate`, or the same EntryError."""
    found = by_offsets(entry)
    if found is None:
        decoded = decode_entry(entry)  # raises the EntryError naming what is wrong
        found = decoded.precert, decoded.certificate  # if the two ever disagree, it decides
    return found


def by_offsets(entry: object) -> tuple[bool, bytes] | None:
    """`entry_certificate`'s answer for a well-formed entry; None for any other."""
    if not isinstance(entry, dict):
        return None
    leaf_b64, extra_b64 = entry.get("leaf_input"), entry.get("extra_data")
    if not isinstance(leaf_b64, str) or not isinstance(extra_b64, str):
        return None
    try:
        leaf = a2b_base64(leaf_b64, strict_mode=True)
        extra = a2b_base64(extra_b64, strict_mode=True)
    except ValueError:  # binascii.Error is one, and so is non-ASCII text
        return None
    return _logged(leaf, extra)


def _logged(leaf: bytes, extra: bytes) -> tuple[bool, bytes] | None:
    """Whether a decoded entry is a precert_entry and its certificate, when its leaf and
    extra_data are RFC 6962's to the last byte."""
    size = len(leaf)
    if size < _HEADER_BYTES + 3:
        return None  # too short for any entry
    version_and_type, _, entry_type = _HEADER.unpack_from(leaf)
    if version_and_type != 0:
        return None
    if entry_type == X509_ENTRY:
        leaf_end = _vector_end(leaf, _HEADER_BYTES)  # the certificate
        certificate = leaf[_HEADER_BYTES + 3 : leaf_end]
        chain_at = 0
    elif entry_type == PRECERT_ENTRY:
        leaf_end = _vector_end(leaf, _HEADER_BYTES + _ISSUER_KEY_HASH_BYTES)  # TBSCertificate
        chain_at = _vector_end(extra, 0)  # after the pre-certificate
        certificate = extra[3:chain_at]
    else:
        return None
    # The leaf's u16-prefixed extensions end it, and extra_data's chain ends that.
    if leaf_end + 2 > size or leaf_end + 2 + (leaf[leaf_end] << 8 | leaf[leaf_end + 1]) != size:
        return None
    return (entry_type == PRECERT_ENTRY, certificate) if _chain_ends(extra, chain_at) else None


def may_be_ca(der: bytes) -> bool:
    """False only when `der` holds no BasicConstraints extension or one saying cA FALSE; True
    when it may say cA TRUE, or the bytes are ambiguous (`cryptography` decides those)."""
    at = der.find(_BASIC_CONSTRAINTS_ID)
    if at < 0:
        return False
    at += len(_BASIC_CONSTRAINTS_ID)
    # Found twice: a duplicate extension, or the bytes inside some field.
    return not der.startswith(_NOT_CA, at) or der.find(_BASIC_CONSTRAINTS_ID, at) >= 0


def _vector_end(data: bytes, at: int) -> int:
    """Where the u24-prefixed vector at `at` ends: beyond `len(data)` when it is truncated."""
    if at + 3 > len(data):
        return len(data) + 1
    return at + 3 + (data[at] << 16 | data[at + 1] << 8 | data[at + 2])


def _chain_ends(extra: bytes, at: int) -> bool:
    """A u24-prefixed vector of u24-prefixed certificates starts at `at` and ends extra_data."""
    size = len(extra)
    if _vector_end(extra, at) != size:
        return False
    at += 3
    while at + 3 <= size:
        at += 3 + (extra[at] << 16 | extra[at + 1] << 8 | extra[at + 2])
    return at == size
