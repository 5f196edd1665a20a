"""RFC 6962 `get-entries` entries, decoded: which certificate each one logs.

An entry is `{"leaf_input": base64, "extra_data": base64}`. `leaf_input` is a MerkleTreeLeaf
(RFC 6962 §3.4): version v1(0), leaf_type timestamped_entry(0), a TimestampedEntry (timestamp
u64 milliseconds, entry_type u16, the signed entry, extensions opaque<0..2^16-1>). `extra_data`
(§4.6) holds, for an x509_entry, the certificate_chain; for a precert_entry, the
PrecertChainEntry: the pre-certificate itself, then its chain.

Only the structure is decoded here, strictly: a truncated vector, trailing bytes, an unknown
version, leaf type or entry type is an `EntryError`. Whether the certificate parses, and whose
it is, is decided by the caller (`agent.sources.ct`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

X509_ENTRY = 0
PRECERT_ENTRY = 1
_V1 = 0
_TIMESTAMPED_ENTRY = 0
_ISSUER_KEY_HASH_BYTES = 32


class EntryError(ValueError):
    """An entry that is not RFC 6962. The message says what; the caller adds where."""


@dataclass(frozen=True)
class CtEntry:
    precert: bool
    timestamp_ms: int
    # x509_entry: the logged certificate (from leaf_input); precert_entry: the signed
    # pre-certificate (from extra_data), since the leaf holds only its unsigned TBSCertificate.
    certificate: bytes
    chain: tuple[bytes, ...]  # the issuing chain from extra_data, as the submitter gave it


class _Reader:
    """Reads TLS presentation-language fields (RFC 5246 §4) off `data`, refusing short reads."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, size: int, field: str) -> bytes:
        left = len(self._data) - self._pos
        if size > left:
            raise EntryError(
                f"{self._what} truncated: {field} needs {size} bytes"
                f" at offset {self._pos}, {left} left"
            )
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def vector(self, length_bytes: int, field: str) -> bytes:
        """An opaque vector whose length prefix is `length_bytes` long (3 for ASN.1Cert)."""
        return self.take(self.uint(length_bytes, f"{field} length"), field)

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def end(self) -> None:
        if not self.at_end():
            extra = len(self._data) - self._pos
            raise EntryError(f"{self._what} has {extra} bytes after its last field")


def decode_entry(entry: object) -> CtEntry:
    """The certificate an entry of a get-entries response logs, and its chain."""
    leaf_b64, extra_b64 = _fields(entry)
    leaf = _Reader(_base64(leaf_b64, "leaf_input"), "leaf_input")
    extra = _Reader(_base64(extra_b64, "extra_data"), "extra_data")
    timestamp, entry_type = _leaf_header(leaf)
    if entry_type == X509_ENTRY:
        certificate = leaf.vector(3, "ASN.1Cert")
    else:
        leaf.take(_ISSUER_KEY_HASH_BYTES, "issuer_key_hash")
        leaf.vector(3, "TBSCertificate")
        certificate = extra.vector(3, "pre_certificate")
    leaf.vector(2, "extensions")
    leaf.end()
    chain = _chain(extra)
    return CtEntry(entry_type == PRECERT_ENTRY, timestamp, certificate, chain)


def _fields(entry: object) -> tuple[object, object]:
    if not isinstance(entry, dict):
        raise EntryError(f"expected an object with leaf_input and extra_data, got {_kind(entry)}")
    missing = [name for name in ("leaf_input", "extra_data") if name not in entry]
    if missing:
        raise EntryError(f"missing {' and '.join(missing)}")
    return entry["leaf_input"], entry["extra_data"]


def _base64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise EntryError(f"{field} must be a base64 string, got {_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:  # non-ASCII text raises a plain ValueError
        raise EntryError(f"{field} is not base64 ({e})") from e


def _leaf_header(leaf: _Reader) -> tuple[int, int]:
    version = leaf.uint(1, "version")
    if version != _V1:
        raise EntryError(f"leaf_input: unknown MerkleTreeLeaf version {version} (v1 is 0)")
    leaf_type = leaf.uint(1, "leaf_type")
    if leaf_type != _TIMESTAMPED_ENTRY:
        raise EntryError(f"leaf_input: unknown leaf type {leaf_type} (timestamped_entry is 0)")
    timestamp = leaf.uint(8, "timestamp")
    entry_type = leaf.uint(2, "entry_type")
    if entry_type not in (X509_ENTRY, PRECERT_ENTRY):
        raise EntryError(
            f"leaf_input: unknown entry type {entry_type} (x509_entry is 0, precert_entry is 1)"
        )
    return timestamp, entry_type


def _chain(extra: _Reader) -> tuple[bytes, ...]:
    # The chain is a vector of ASN.1Certs inside one u24-prefixed vector, and ends extra_data.
    chain = _Reader(extra.vector(3, "certificate_chain"), "extra_data certificate_chain")
    extra.end()
    certificates: list[bytes] = []
    while not chain.at_end():
        certificates.append(chain.vector(3, f"chain certificate {len(certificates) + 1}"))
    return tuple(certificates)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
