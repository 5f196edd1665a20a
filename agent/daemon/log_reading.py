"""Reading the exchange's log for the log watch and the restore: the calls, an entry proven
included, the entries of a range, and a receipt taken with the proof its checkpoint needs.

The trusted state (`agent.exchange.trusted`) does no I/O: `take_receipt` asks it which
consistency proof a receipt's checkpoint needs, fetches it, and hands it in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import Checkpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.logrange import BadLogRange, LogRange
from invsync.agent.exchange.receipt import Receipt, decode_receipt
from invsync.agent.exchange.rejections import LogInconsistentError, LogSplitViewError
from invsync.agent.exchange.trusted import PairingTrust, TrustedState
from invsync.agent.model.findings import LOG_INCONSISTENT, LOG_SPLIT_VIEW, make_finding

Fail = Callable[[str], InvsyncError]


class LogClient(Protocol):
    """The log calls of `agent.exchange.client.ExchangeClient`, all the log readers use."""

    def checkpoint(
        self,
        tree_size: int = 0,
        proof_from: int = 0,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> bytes: ...

    def log_range(self, start: int, end: int) -> LogRange: ...

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]: ...

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]: ...


def take_receipt(
    client: LogClient, trust: PairingTrust[Any], env: Envelope, *, version: int, payload: bytes
) -> Receipt:
    """`trust.update_receipt` with the consistency proof its checkpoint needs, fetched here."""
    sizes = trust.receipt_proof_sizes(env, version=version, payload=payload)
    proof = client.consistency_proof(*sizes) if sizes else []
    return trust.update_receipt(env, version=version, payload=payload, proof=proof)


def latest_receipt(state: TrustedState) -> Receipt | None:
    """The receipt of our latest receipted version (verified when the state took it)."""
    if not state.receipts:
        return None
    return decode_receipt(state.receipts[max(state.receipts)])


def inconsistent(pairing: str) -> Fail:
    """How a check of the log refuses: a `log-inconsistent` finding of the pairing."""

    def error(detail: str) -> InvsyncError:
        message = f"pairing {pairing!r}: {detail}"
        finding = make_finding(LOG_INCONSISTENT, sha256="", subject="", party="", message=message)
        return LogInconsistentError(message, finding)

    return error


def split_view(pairing: str) -> Fail:
    """How the peer view check refuses: a `log-split-view` finding of the pairing."""

    def error(detail: str) -> InvsyncError:
        message = f"pairing {pairing!r}: {detail}"
        finding = make_finding(LOG_SPLIT_VIEW, sha256="", subject="", party="", message=message)
        return LogSplitViewError(message, finding)

    return error


def read_entry(client: LogClient, index: int, where: str, fail: Fail) -> bytes:
    """The exact bytes of entry `index`, which is of one of our pairings (never withheld)."""
    served = client.log_range(index, index + 1)
    try:
        served.check()
    except BadLogRange as e:
        raise fail(f"{where}: {e}") from e
    if not served.entries or not served.entries[0]:
        raise fail(f"{where}: the server withheld it from a party of its pairing")
    return served.entries[0]


def check_included(
    client: LogClient, leaf: bytes, index: int, head: Checkpoint, where: str, fail: Fail
) -> None:
    """The leaf hash of these exact bytes is entry `index` of the checkpoint's tree."""
    proof = client.inclusion_proof(index, head.size)
    try:
        tlog.verify_inclusion(tlog.leaf_hash(leaf), index, head.size, proof, head.root)
    except tlog.ProofError as e:
        raise fail(f"{where}: {e}") from e


def shown_entries(client: LogClient, start: int, end: int, fail: Fail) -> list[tuple[int, bytes]]:
    """Every index start <= index < end with the bytes the server shows us (b"": withheld, an
    entry of another pairing by the server's word), asking again after each part of a range of
    large entries. The caller decides what a withheld entry means to it."""
    shown: list[tuple[int, bytes]] = []
    while start < end:
        served = client.log_range(start, end)
        try:
            served.check()
        except BadLogRange as e:
            raise fail(str(e)) from e
        if not len(served):
            raise fail(f"log entries {start}..{end}: the server answered none")
        count = min(len(served), end - start)
        shown += [(start + i, leaf) for i, leaf in enumerate(served.entries[:count])]
        start += count
    return shown
