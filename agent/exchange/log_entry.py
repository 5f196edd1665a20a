"""The transparency log's entries as the server writes them (`invsync.v1.LogEntry`, DESIGN §6a):
the one canonical byte form of an envelope in an entry, making an entry, and reading one back.

The server makes its entries here (`server.storage` imports `log_entry`), so that an agent
compares what it pushed with what was logged in the very byte form the server wrote: its own
snapshot's entry must hold `canonical_envelope` of the envelope it pushed, byte for byte
(`holds_canonical` compares the two without making that form). A
restored agent reads its own snapshot back out of an entry with `logged_envelope`, which accepts
only that canonical form (another spelling of the same JSON is not what the server wrote).
Nothing here checks a signature or a proof: the caller does, before it trusts what it read.
"""

from __future__ import annotations

import base64
import json

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.envelope import Envelope, MalformedEnvelope, json_fields_but_payload
from invsync.agent.model.untrusted_json import read_json
from invsync.v1 import invsync_pb2 as pb

KIND_NAMES = {
    pb.LOG_ENTRY_KIND_SNAPSHOT: "SNAPSHOT",
    pb.LOG_ENTRY_KIND_RECEIPT: "RECEIPT",
    pb.LOG_ENTRY_KIND_REPORT: "REPORT",
    pb.LOG_ENTRY_KIND_REPORT_SIGNATURE: "REPORT_SIGNATURE",
    pb.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT: "KEY_ANNOUNCEMENT",
    pb.LOG_ENTRY_KIND_CHAIN_RESET: "CHAIN_RESET",
    pb.LOG_ENTRY_KIND_SERVER_KEY: "SERVER_KEY",
}


class MalformedLogEntry(InvsyncError):
    """A log entry is not a LogEntry message, or its envelope is not in the canonical form."""

    hint = (
        "The exchange's log holds an entry its server did not write that way; keep the entry "
        "and its checkpoint as evidence and tell the exchange operator."
    )


# Bytes of payload compared per step in `holds_canonical`: a multiple of 3, so that each
# slice's base64 is the next part of the whole payload's.
COMPARED_PER_STEP = 3 << 20
_PAYLOAD_OPEN = b'{"payload":"'


def canonical_envelope(env: Envelope) -> bytes:
    """The one byte form of an envelope in a log entry (documented at LogEntry.envelope): DSSE
    JSON, keys sorted, no whitespace. Computed once, when the entry is made; never again.

    `json.dumps(env.to_json_dict(), sort_keys=True, separators=(",", ":"))` in UTF-8, made
    from its parts (tests/test_log_entry_compare.py holds the two equal): the payload's key
    sorts first and its base64 is written as it is, so the payload is encoded once, as bytes,
    and not again as text, JSON text and its bytes (820 MB each at 1,000,000 certificates)."""
    return b"".join((_PAYLOAD_OPEN, base64.b64encode(env.payload), _rest_of_object(env)))


def _rest_of_object(env: Envelope) -> bytes:
    """What follows the payload's base64 in `canonical_envelope(env)`: its closing quote,
    then the other members and the object's closing brace."""
    rest = json.dumps(json_fields_but_payload(env), sort_keys=True, separators=(",", ":"))
    return b'",' + rest[1:].encode("utf-8")


def holds_canonical(logged: bytes, env: Envelope, step: int = COMPARED_PER_STEP) -> bool:
    """Whether `logged` is `canonical_envelope(env)`, byte for byte, without making it: a full
    snapshot's envelope is mostly its payload in base64 (820 MB at 1,000,000 certificates),
    which would be made three times over (the base64, the JSON text, its bytes). The payload
    is the first key, so the form is the opening, the payload's base64 (which JSON writes as
    it is), then the rest of the object, compared here in that order, `step` bytes of payload
    (a multiple of 3) at a time."""
    if step <= 0 or step % 3:
        raise ValueError(f"step must be a positive multiple of 3, got {step}")
    payload = memoryview(env.payload)
    encoded_length = 4 * ((len(payload) + 2) // 3)
    start, end = len(_PAYLOAD_OPEN), len(_PAYLOAD_OPEN) + encoded_length
    tail = _rest_of_object(env)
    if len(logged) != end + len(tail) or not logged.startswith(_PAYLOAD_OPEN):
        return False
    if not logged.endswith(tail):
        return False
    seen = memoryview(logged)[start:end]
    for offset in range(0, len(payload), step):
        encoded = base64.b64encode(payload[offset : offset + step])
        at = offset // 3 * 4
        if seen[at : at + len(encoded)] != encoded:
            return False
    return True


def log_entry(
    kind: pb.LogEntryKind.ValueType,
    env: Envelope,
    *,
    pairing: str,
    party: str = "",
    version: int = 0,
    report_id: str = "",
    announced_key: bytes = b"",
) -> pb.LogEntry:
    """The entry recording `env`; the server serializes it once, and stores those bytes."""
    return pb.LogEntry(
        kind=kind,
        party=party,
        pairing=pairing,
        version=version,
        report_id=report_id,
        envelope=canonical_envelope(env),
        announced_key=announced_key,
    )


def parse_log_entry(leaf: bytes, where: str) -> pb.LogEntry:
    """The entry in `leaf` (whose leaf hash the caller checked); MalformedLogEntry otherwise."""
    try:
        return pb.LogEntry.FromString(leaf)
    except DecodeError as e:
        raise MalformedLogEntry(f"{where}: not a LogEntry ({e})") from e


def kind_name(entry: pb.LogEntry) -> str:
    return KIND_NAMES.get(entry.kind, f"kind {entry.kind}")


def logged_envelope(entry: pb.LogEntry, where: str) -> Envelope:
    """The envelope an entry holds, its payload still unparsed bytes; MalformedLogEntry unless
    the entry holds it in the canonical form, exactly as `canonical_envelope` writes it."""
    obj = read_json(entry.envelope, f"{where}: its envelope", MalformedLogEntry)
    if not isinstance(obj, dict):
        raise MalformedLogEntry(f"{where}: its envelope is not a JSON object")
    try:
        env = Envelope.from_json_dict(obj)
    except MalformedEnvelope as e:
        raise MalformedLogEntry(f"{where}: its envelope is not DSSE JSON ({e})") from e
    if canonical_envelope(env) != entry.envelope:
        raise MalformedLogEntry(f"{where}: its envelope is not in the canonical byte form")
    return env
