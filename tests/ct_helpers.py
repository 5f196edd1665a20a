"""Test helper: RFC 6962 get-entries entries, encoded from real certificates.

The encoder lives here, apart from the decoder in `agent.sources.ct_entries`, so that the tests
check the decoder against an independent reading of RFC 6962 §3.4 and §4.6.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

X509_ENTRY = 0
PRECERT_ENTRY = 1
TIMESTAMP_MS = 1_594_339_200_000  # 2020-07-10T00:00:00Z, the day the bug's certificates were issued


def uint(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def vector(data: bytes, length_bytes: int) -> bytes:
    """A TLS opaque vector: a big-endian length of `length_bytes` bytes, then the data."""
    return uint(len(data), length_bytes) + data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def leaf_header(entry_type: int, *, version: int = 0, leaf_type: int = 0) -> bytes:
    """MerkleTreeLeaf up to the signed entry: version, leaf_type, timestamp, entry_type."""
    return uint(version, 1) + uint(leaf_type, 1) + uint(TIMESTAMP_MS, 8) + uint(entry_type, 2)


def chain(certificates: Sequence[bytes]) -> bytes:
    """`ASN.1Cert certificate_chain<0..2^24-1>`: a u24 total, then u24-prefixed certificates."""
    return vector(b"".join(vector(der, 3) for der in certificates), 3)


def x509_leaf(certificate: bytes) -> bytes:
    return leaf_header(X509_ENTRY) + vector(certificate, 3) + vector(b"", 2)


def precert_leaf(tbs: bytes, issuer_spki: bytes) -> bytes:
    issuer_key_hash = hashlib.sha256(issuer_spki).digest()
    return leaf_header(PRECERT_ENTRY) + issuer_key_hash + vector(tbs, 3) + vector(b"", 2)


def x509_entry(certificate: bytes, issuers: Sequence[bytes] = ()) -> dict[str, str]:
    return {"leaf_input": b64(x509_leaf(certificate)), "extra_data": b64(chain(issuers))}


def precert_entry(
    precertificate: bytes, tbs: bytes, issuer_spki: bytes, issuers: Sequence[bytes] = ()
) -> dict[str, str]:
    """A precert_entry: the leaf holds the TBSCertificate, extra_data the PrecertChainEntry."""
    extra = vector(precertificate, 3) + chain(issuers)
    return {"leaf_input": b64(precert_leaf(tbs, issuer_spki)), "extra_data": b64(extra)}
