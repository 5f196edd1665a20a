"""The exchange operator's reset of one party's chain in a pairing, as the server signs it.

After a party's signing key was misused (snapshots pushed under it that the party never made),
the operator runs `invsync server reset-chain`: the server sets aside the snapshots above the
last good version, appends a CHAIN_RESET entry to its log holding this signed statement, and
from then on accepts the party's next snapshot as following that version. Agents and the
evidence verifier read the statement from the log, after checking the server's signature with a
pinned key; nothing in it is trusted before that (`decode_chain_reset` takes a verified
envelope).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope, verify_or_raise
from invsync.agent.exchange.keys import SigningKey, VerifyKey
from invsync.agent.exchange.log_entry import logged_envelope
from invsync.agent.exchange.record_codec import from_timestamp, timestamp
from invsync.v1 import invsync_pb2 as pb

CHAIN_RESET_PAYLOAD_TYPE = "application/vnd.invsync.chain-reset.v1+protobuf"


class MalformedChainReset(InvsyncError):
    """A CHAIN_RESET entry's statement is not a well-formed ChainResetBody."""

    hint = (
        "The exchange's log holds a chain reset its server did not write that way; keep the "
        "entry and its checkpoint as evidence and tell the exchange operator."
    )


@dataclass(frozen=True)
class ChainReset:
    """One party's chain in one pairing continues from `continues_from` (0: from nothing)."""

    server: str
    party: str
    pairing: str
    continues_from: int
    superseded: tuple[int, ...]  # the versions above it the server set aside, ascending
    reason: str
    reset_at: datetime

    def names(self) -> tuple[str, str, int]:
        """The party, pairing and version its log entry must name."""
        return (self.party, self.pairing, self.continues_from)

    def describe(self) -> str:
        start = f"version {self.continues_from}" if self.continues_from else "no snapshot"
        aside = ", ".join(map(str, self.superseded)) or "none"
        return (
            f"the exchange operator reset {self.party}'s chain in pairing {self.pairing} to "
            f"continue from {start} (versions set aside: {aside}; reason: {bounded(self.reason)})"
        )


def sign_chain_reset(reset: ChainReset, key: SigningKey) -> Envelope:
    return envelope.sign(CHAIN_RESET_PAYLOAD_TYPE, reset_body(reset), [key])


def reset_body(reset: ChainReset) -> bytes:
    """The serialized ChainResetBody: what the server signs, and what an agent keeps of a reset
    it verified until it applies it."""
    body = pb.ChainResetBody(
        server=reset.server,
        party=reset.party,
        pairing=reset.pairing,
        continues_from=reset.continues_from,
        superseded=reset.superseded,
        reason=reset.reason,
        reset_at=timestamp(reset.reset_at),
    )
    return body.SerializeToString()


def decode_chain_reset(env: Envelope, where: str) -> ChainReset:
    """The statement in `env`, whose signature the caller has already verified."""
    if env.payload_type != CHAIN_RESET_PAYLOAD_TYPE:
        raise MalformedChainReset(
            f"{where}: payload type {bounded(env.payload_type)!r} is not "
            f"{CHAIN_RESET_PAYLOAD_TYPE!r}"
        )
    try:
        body = pb.ChainResetBody.FromString(env.payload)
        reset_at = from_timestamp(body.reset_at, "chain reset reset_at")
    except (DecodeError, ValueError) as e:
        raise MalformedChainReset(f"{where}: not a ChainResetBody ({bounded(e)})") from e
    superseded = tuple(body.superseded)
    if list(superseded) != sorted(set(superseded)) or any(
        v <= body.continues_from for v in superseded
    ):
        raise MalformedChainReset(
            f"{where}: the versions set aside must ascend, each above {body.continues_from}"
        )
    return ChainReset(
        body.server,
        body.party,
        body.pairing,
        body.continues_from,
        superseded,
        body.reason,
        reset_at,
    )


def check_names(reset: ChainReset, named: tuple[str, str, int], where: str) -> None:
    """MalformedChainReset unless the signed statement is the one its log entry names (party,
    pairing, version continued from)."""
    if reset.names() != named:
        raise MalformedChainReset(
            f"{where}: the entry names a reset of {named[0]} in pairing {named[1]} from version "
            f"{named[2]}, the signed statement one of {reset.party} in pairing {reset.pairing} "
            f"from version {reset.continues_from}"
        )


def open_chain_reset(
    entry: pb.LogEntry, where: str, server_keys: Mapping[str, VerifyKey]
) -> ChainReset:
    """A CHAIN_RESET entry's statement, once a pinned server key signed its exact bytes and it
    is the one the entry names; an InvsyncError naming `where` otherwise."""
    env = logged_envelope(entry, where)
    verify_or_raise(env, server_keys, who=f"the chain reset at {where}")
    reset = decode_chain_reset(env, where)
    check_names(reset, (entry.party, entry.pairing, entry.version), where)
    return reset
