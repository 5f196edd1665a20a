"""The bundle's entries, parsed once checks 2 to 5 have proven their exact bytes are in the log.

Each leaf is a serialized `invsync.v1.LogEntry` whose envelope must be in the one canonical DSSE
JSON form the server writes (`agent.exchange.log_entry`); it is decoded into an `Envelope` whose
payload stays bytes: nothing in it is parsed before its signature is checked (`signatures.py`).
A leaf that is no well-formed entry fails the signature check, the first that reads entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.log_entry import MalformedLogEntry, logged_envelope, parse_log_entry
from invsync.v1 import invsync_pb2 as pb

K = pb.LogEntryKind
KIND_NAMES = {
    K.LOG_ENTRY_KIND_SNAPSHOT: "snapshot",
    K.LOG_ENTRY_KIND_RECEIPT: "receipt",
    K.LOG_ENTRY_KIND_REPORT: "report",
    K.LOG_ENTRY_KIND_REPORT_SIGNATURE: "co-signature",
    K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT: "key announcement",
}


@dataclass(frozen=True)
class Logged:
    """One entry of the log, as the server wrote it; only its envelope's signatures say more."""

    index: int
    kind: pb.LogEntryKind.ValueType
    party: str
    pairing: str
    version: int
    report_id: str
    envelope: Envelope
    announced_key: bytes

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


def parse_entries(leaves: Mapping[int, bytes]) -> list[Logged]:
    """Every leaf the bundle holds, in log order."""
    return [_parse(index, leaves[index]) for index in sorted(leaves)]


def _parse(index: int, leaf: bytes) -> Logged:
    where = entry(index)
    try:
        msg = parse_log_entry(leaf, where)
        env = logged_envelope(msg, where)  # only the canonical form the server writes
    except MalformedLogEntry as e:
        raise CheckFailed("signature", where, str(e).removeprefix(f"{where}: ")) from e
    if msg.kind not in KIND_NAMES:
        raise CheckFailed("signature", where, f"unknown entry kind {msg.kind}")
    if not msg.pairing:
        raise CheckFailed("signature", where, "the entry names no pairing")
    return Logged(
        index=index,
        kind=msg.kind,
        party=msg.party,
        pairing=msg.pairing,
        version=msg.version,
        report_id=msg.report_id,
        envelope=env,
        announced_key=msg.announced_key,
    )
