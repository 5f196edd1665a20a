"""Report bodies cut out of log entries a reader already holds them for (issue 13: bytes down).

A party's co-signature entry (LOG_ENTRY_KIND_REPORT_SIGNATURE) holds the whole report body it
signed, and the party's log watch reads its own entries: that body came down once as the report
and again inside the entry, as base64 text in the envelope's JSON. A reader names the reports it
holds (their ids, the SHA-256 of each body); the server cuts such a body's text out of the
entry's bytes and says where, and the reader puts its own copy back. The bytes put back are
checked by the entry's leaf hash like any others, so the cut changes nothing a reader trusts: a
wrong offset or id fails that check.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Collection

from google.protobuf.message import DecodeError

from invsync.v1 import invsync_pb2 as pb

# The entries that carry a report body in their envelope.
_WITH_BODY = (pb.LOG_ENTRY_KIND_REPORT, pb.LOG_ENTRY_KIND_REPORT_SIGNATURE)


def cut(index: int, leaf: bytes, known: Collection[str]) -> tuple[bytes, pb.ElidedBody | None]:
    """`leaf` (a stored LogEntry) with the body of a report in `known` cut out, and where;
    the leaf as it is when it carries no such body. The entry's envelope is canonical JSON
    (envelope.py), so what is cut is the body's base64 text, as `_text` spells it."""
    if not known or not leaf:
        return leaf, None
    try:
        entry = pb.LogEntry.FromString(leaf)
        if entry.kind not in _WITH_BODY or entry.report_id not in known:
            return leaf, None
        text = json.loads(entry.envelope)["payload"].encode("ascii")
        body = base64.b64decode(text, validate=True)
    except (DecodeError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return leaf, None  # not what this server writes: served as it is
    if hashlib.sha256(body).hexdigest() != entry.report_id or _text(body) != text:
        return leaf, None  # not that report's body, or not spelled as the reader will spell it
    at = leaf.find(text)
    if at < 0:
        return leaf, None
    return leaf[:at] + leaf[at + len(text) :], pb.ElidedBody(
        index=index, offset=at, report_id=entry.report_id
    )


def _text(body: bytes) -> bytes:
    return base64.b64encode(body)


def put_back(
    entries: list[bytes], elided: Collection[pb.ElidedBody], body_of: Callable[[str], bytes | None]
) -> bool:
    """Put each cut body back into `entries`, in place, from `body_of` (a report id to the
    body held, or None); False if one is not held or does not fit (the reader then asks for
    the entries whole). Whether the result is right is for the leaf hashes to tell."""
    for cut_out in elided:
        body = body_of(cut_out.report_id)
        if body is None or not 0 <= cut_out.index < len(entries):
            return False
        entry = entries[cut_out.index]
        if not entry or cut_out.offset > len(entry):
            return False
        text = _text(body)
        entries[cut_out.index] = entry[: cut_out.offset] + text + entry[cut_out.offset :]
    return True
