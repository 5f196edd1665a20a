"""The server's signed receipt for an accepted snapshot: part of the wire format, so both sides
share it here. The server builds and signs one (`sign_receipt`); the agent decodes it
(`decode_receipt`) from an envelope whose signature it has already checked.

The payload is a serialized `invsync.v1.ReceiptBody`, signed as those exact bytes
(`agent.exchange.envelope`) under its own payload type, so a receipt's signature can never pass
for a snapshot's or a report's. It also says where the snapshot went in the server's
transparency log: the entry's index and a signed checkpoint of a tree that includes it
(`logged_checkpoint` opens that checkpoint with the pinned server key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.exchange import envelope
from invsync.agent.exchange.checkpoint import Checkpoint, open_checkpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import SigningKey, VerifyKey
from invsync.agent.exchange.record_codec import from_timestamp, timestamp
from invsync.v1 import invsync_pb2 as pb

RECEIPT_PAYLOAD_TYPE = "application/vnd.invsync.receipt.v1+protobuf"


class MalformedReceipt(InvsyncError):
    """A receipt is not a well-formed ReceiptBody of the receipt payload type."""

    hint = "The exchange server answered with something else than a receipt; check its version."


@dataclass(frozen=True)
class Receipt:
    """What the server signs when it accepts a snapshot."""

    party: str
    pairing: str
    version: int
    payload_sha256: bytes  # raw SHA-256 of the accepted snapshot payload
    accepted_at: datetime
    server: str  # the server's configured name
    log_index: int  # the index of the snapshot's entry in the server's log
    checkpoint: bytes  # a signed note of a tree including log_index; b"" from a server without


def receipt_for(
    *,
    party: str,
    pairing: str,
    version: int,
    payload: bytes,
    accepted_at: datetime,
    server: str,
    log_index: int,
    checkpoint: bytes,
) -> Receipt:
    """The receipt for the snapshot `payload` accepted at `accepted_at` and logged at
    `log_index`, with the signed `checkpoint` of a tree that includes it."""
    digest = hashlib.sha256(payload).digest()
    return Receipt(party, pairing, version, digest, accepted_at, server, log_index, checkpoint)


def sign_receipt(receipt: Receipt, key: SigningKey) -> Envelope:
    """An envelope of type RECEIPT_PAYLOAD_TYPE over the serialized receipt, signed by `key`."""
    body = pb.ReceiptBody(
        party=receipt.party,
        pairing=receipt.pairing,
        version=receipt.version,
        payload_sha256=receipt.payload_sha256,
        accepted_at=timestamp(receipt.accepted_at),
        server=receipt.server,
        log_index=receipt.log_index,
        checkpoint=receipt.checkpoint,
    )
    return envelope.sign(RECEIPT_PAYLOAD_TYPE, body.SerializeToString(), [key])


def decode_receipt(env: Envelope) -> Receipt:
    """The receipt in `env`, whose signature the caller has already verified."""
    if env.payload_type != RECEIPT_PAYLOAD_TYPE:
        raise MalformedReceipt(
            f"payload type {bounded(env.payload_type)!r} is not {RECEIPT_PAYLOAD_TYPE!r}"
        )
    try:
        body = pb.ReceiptBody.FromString(env.payload)
    except DecodeError as e:
        raise MalformedReceipt(f"payload is not a ReceiptBody ({bounded(e)})") from e
    return Receipt(
        party=body.party,
        pairing=body.pairing,
        version=body.version,
        payload_sha256=body.payload_sha256,
        accepted_at=_accepted_at(body),
        server=body.server,
        log_index=body.log_index,
        checkpoint=body.checkpoint,
    )


def _accepted_at(body: pb.ReceiptBody) -> datetime:
    try:
        return from_timestamp(body.accepted_at, "receipt accepted_at")
    except ValueError as e:
        raise MalformedReceipt(str(e)) from e


def logged_checkpoint(receipt: Receipt, keys: Mapping[str, VerifyKey]) -> Checkpoint:
    """The receipt's checkpoint, opened with the pinned `keys` (name -> key) under the origin
    the receipt names; MalformedReceipt unless its tree includes the receipt's log index."""
    checkpoint = open_checkpoint(receipt.checkpoint, receipt.server, keys)
    check_in_tree(receipt, checkpoint)
    return checkpoint


def check_in_tree(receipt: Receipt, checkpoint: Checkpoint) -> None:
    """MalformedReceipt unless the receipt's checkpoint (opened by the caller) holds its entry."""
    if receipt.log_index >= checkpoint.size:
        raise MalformedReceipt(
            f"receipt of {bounded(receipt.party)} version {receipt.version}: log entry "
            f"{receipt.log_index} is not in its checkpoint's tree of size {checkpoint.size}"
        )
