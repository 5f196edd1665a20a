"""The transparency log's entries as the server writes them (`invsync.v1.LogEntry`, DESIGN §6a):
the one canonical byte form of an envelope in an entry, making an entry, and reading one back.

The server makes its entries here (`server.storage` imports `log_entry`), so that an agent
compares what it pushed with what was logged in the very byte form the server wrote: its own
snapshot's entry must hold `canonical_envelope` of the envelope it pushed, byte for byte. A
restored agent reads its own snapshot back out of an entry with `logged_envelope`, which accepts
only that canonical form (another spelling of the same JSON is not what the server wrote).
Nothing here checks a signature or a proof: the caller does, before it trusts what it read.
"""

from __future__ import annotations

import json

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.envelope import Envelope, MalformedEnvelope
from invsync.agent.model.untrusted_json import read_json
from invsync.v1 import invsync_pb2 as pb

KIND_NAMES = {
    pb.LOG_ENTRY_KIND_SNAPSHOT: "SNAPSHOT",
    pb.LOG_ENTRY_KIND_RECEIPT: "RECEIPT",
    pb.LOG_ENTRY_KIND_REPORT: "REPORT",
    pb.LOG_ENTRY_KIND_REPORT_SIGNATURE: "REPORT_SIGNATURE",
    pb.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT: "KEY_ANNOUNCEMENT",
    pb.LOG_ENTRY_KIND_CHAIN_RESET: "CHAIN_RESET",
}


class MalformedLogEntry(InvsyncError):
    """A log entry is not a LogEntry message, or its envelope is not in the canonical form."""

    hint = (
        "The exchange's log holds an entry its server did not write that way; keep the entry "
        "and its checkpoint as evidence and tell the exchange operator."
    )


def canonical_envelope(env: Envelope) -> bytes:
    """The one byte form of an envelope in a log entry (documented at LogEntry.envelope): DSSE
    JSON, keys sorted, no whitespace. Computed once, when the entry is made; never again."""
    text = json.dumps(env.to_json_dict(), sort_keys=True, separators=(",", ":"))
    return text.encode("utf-8")


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
