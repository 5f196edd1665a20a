"""Payloads cut out of log entries whose reader already holds them (issue 13: bytes down).

A party's log watch reads its own entries: its snapshots, which it pushed, and its co-signatures,
each holding the whole report body it signed. Both came down before (or never had to): the
snapshot was sent up, the body came down as the report. A reader names the payloads it holds
(the SHA-256 of each; a report's id is its body's); the server cuts such a payload's base64 text
out of the entry's bytes (the envelope in an entry is canonical JSON) and says where, and the
reader puts its own copy back. The bytes put back are checked by the entry's leaf hash like any
others, so the cut changes nothing a reader trusts: a wrong offset or payload fails that check.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Collection, Sequence

from google.protobuf.message import DecodeError

from invsync.agent.kept import Kept
from invsync.v1 import invsync_pb2 as pb


def cut(
    index: int, leaf: bytes, held: Collection[str], leaf_hash: bytes = b""
) -> tuple[bytes, pb.ElidedPayload | None]:
    """`leaf` (a stored LogEntry) with its envelope's payload cut out if it is one of `held`,
    and where; the leaf as it is otherwise. `leaf_hash`, the log's hash of this very leaf,
    lets a later call find the payload without reading the entry again."""
    if not held or not leaf:
        return leaf, None
    found = _FOUND.get(leaf_hash) if leaf_hash else None
    if found is None:
        found = _payload_in(leaf)
        if leaf_hash:
            _FOUND.keep(leaf_hash, found)
    digest, at, length = found
    if not digest or digest not in held:  # a reader's "" names no payload
        return leaf, None
    return leaf[:at] + leaf[at + length :], pb.ElidedPayload(
        index=index, offset=at, payload_sha256=digest
    )


# Where each entry's payload is, by the entry's leaf hash: an entry never changes, and each of
# a first cycle's entries (a 60 MB snapshot at 100,000 certificates) is answered to several
# calls, each read costing about half a second (issue 13).
_FOUND: Kept[bytes, tuple[str, int, int]] = Kept()
_NO_PAYLOAD = ("", -1, 0)


def _payload_in(leaf: bytes) -> tuple[str, int, int]:
    """(SHA-256 of the payload, offset and length of its text in `leaf`), or _NO_PAYLOAD: no
    envelope (a chain reset), not what this server writes, or not spelled as a reader will."""
    try:
        entry = pb.LogEntry.FromString(leaf)
        text = json.loads(entry.envelope)["payload"].encode("ascii")
        payload = base64.b64decode(text, validate=True)
    except (DecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return _NO_PAYLOAD
    if _text(payload) != text:
        return _NO_PAYLOAD
    at = leaf.find(text)
    if at < 0:
        return _NO_PAYLOAD
    return hashlib.sha256(payload).hexdigest(), at, len(text)


def put_back(
    entries: list[bytes],
    elided: Sequence[pb.ElidedPayload],
    payload_of: Callable[[str], bytes | None],
    limit: int,
) -> bool:
    """Put each cut payload back into `entries`, in place, from `payload_of` (a SHA-256 to the
    payload held, or None); False if one is not held or does not fit, if two name one entry or
    come out of order, or if more than `limit` bytes would be put back (a server cuts at most
    one payload from an entry: a hostile one must not make the reader copy payloads without
    end). The reader then asks for the entries whole. Whether the result is right is for the
    leaf hashes to tell."""
    indexes = [cut_out.index for cut_out in elided]
    if indexes != sorted(set(indexes)):
        return False
    put = 0
    for cut_out in elided:
        payload = payload_of(cut_out.payload_sha256)
        if payload is None or not 0 <= cut_out.index < len(entries):
            return False
        put += len(payload)
        if put > limit:
            return False
        entry = entries[cut_out.index]
        if not entry or cut_out.offset > len(entry):
            return False
        text = _text(payload)
        entries[cut_out.index] = entry[: cut_out.offset] + text + entry[cut_out.offset :]
    return True


def _text(payload: bytes) -> bytes:
    return base64.b64encode(payload)


def restored(
    served: pb.LogEntries, payload_of: Callable[[str], bytes | None], limit: int
) -> pb.LogEntries | None:
    """`served` with every cut payload put back (`put_back`), or None if one cannot be."""
    entries = list(served.entries)
    if not put_back(entries, served.elided, payload_of, limit):
        return None
    return pb.LogEntries(entries=entries, leaf_hashes=served.leaf_hashes)
