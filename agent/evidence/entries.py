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
from invsync.agent.exchange.log_entry import (
    KIND_NAMES,
    MalformedLogEntry,
    logged_envelope,
    parse_log_entry,
)
from invsync.v1 import invsync_pb2 as pb

K = pb.LogEntryKind


@dataclass(frozen=True)
class LoggedEntry:
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
        """The kind for a sentence: "snapshot", "co-signature", "key announcement"."""
        name = KIND_NAMES[self.kind]  # the one table of kinds; a co-signature as people say it
        return "co-signature" if name == "REPORT_SIGNATURE" else name.lower().replace("_", " ")


def parse_entries(leaves: Mapping[int, bytes]) -> list[LoggedEntry]:
    """Every leaf the bundle holds, in log order."""
    return [_parse(index, leaves[index]) for index in sorted(leaves)]


def _parse(index: int, leaf: bytes) -> LoggedEntry:
    where = entry(index)
    try:
        msg = parse_log_entry(leaf, where)
        env = logged_envelope(msg, where)  # only the canonical form the server writes
    except MalformedLogEntry as e:
        raise CheckFailed("signature", where, str(e).removeprefix(f"{where}: ")) from e
    if msg.kind not in KIND_NAMES:
        raise CheckFailed("signature", where, f"unknown entry kind {msg.kind}")
    if not msg.pairing and msg.kind != pb.LOG_ENTRY_KIND_SERVER_KEY:  # the server's: every one's
        raise CheckFailed("signature", where, "the entry names no pairing")
    return LoggedEntry(
        index=index,
        kind=msg.kind,
        party=msg.party,
        pairing=msg.pairing,
        version=msg.version,
        report_id=msg.report_id,
        envelope=env,
        announced_key=msg.announced_key,
    )
