"""What a GetCheckpoint answer carried beside its note (issue 13: fewer calls a cycle).

A log watch asks for the latest checkpoint, then for the consistency proof from the one it
holds, the inclusion proofs of its receipts' entries and the entries added since. The server
can answer all of these with the checkpoint; the client keeps them here and answers the later
calls from them. Nothing here is trusted: each reader verifies a proof or an entry range as if
it had been asked for alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from invsync.agent.exchange import elision
from invsync.agent.exchange.logrange import LogRange
from invsync.v1 import invsync_pb2 as pb


@dataclass(frozen=True)
class ServedLog:
    """Proofs and entries a GetCheckpoint answer carried beside its note, by what a later call
    would ask: consistency proofs by (from, to) size, inclusion proofs by (index, size), and one
    range of entries."""

    consistency: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    inclusion: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)
    entries: LogRange | None = None

    @classmethod
    def of(
        cls,
        answer: pb.SignedCheckpoint,
        proof_from: int,
        inclusion_of: Sequence[int],
        payload_of: Callable[[str], bytes | None] = lambda digest: None,
        limit: int = 0,
    ) -> ServedLog:
        """What `answer` carried; entries served with a payload cut out get it back from
        `payload_of` (agent.exchange.elision), at most `limit` bytes in all (what one answer
        may carry), or are not kept (asked for again whole)."""
        size = answer.tree_size
        if not size:
            return cls()
        consistency = {(proof_from, size): list(answer.consistency)} if answer.consistency else {}
        asked = [i for i in inclusion_of if i < size]
        inclusion = {
            (index, size): list(proof.hashes)
            for index, proof in zip(asked, answer.inclusion, strict=False)
        }
        entries = None
        if answer.HasField("entries") and answer.entries.leaf_hashes:
            whole = elision.restored(answer.entries, payload_of, limit)
            entries = LogRange.from_pb(proof_from, whole) if whole is not None else None
        return cls(consistency, inclusion, entries)

    def with_consistency(self, sizes: tuple[int, int], proof: list[bytes]) -> ServedLog:
        """This, and a consistency proof served elsewhere (a push's receipt)."""
        return replace(self, consistency={**self.consistency, sizes: proof})

    def log_range(self, start: int, end: int) -> LogRange | None:
        """The part of the entries served from `start` on, up to `end`; None if not served."""
        served = self.entries
        if served is None or not served.start <= start < served.start + len(served):
            return None
        first, last = start - served.start, min(end, served.start + len(served)) - served.start
        return LogRange(start, served.leaf_hashes[first:last], served.entries[first:last])
