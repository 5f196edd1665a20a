"""The peer's snapshot that comes with a report answer (GetReportRequest.with_peer, issue 13).

A co-signing agent reads the report, then fetches the peer's snapshot it names and the
consistency proof between the checkpoint that snapshot carries and its own: three calls for one
question. With `with_peer` the report's answer carries both when the snapshot is small and needs
no whole set (a full snapshot, or a delta on the one the caller holds); otherwise the caller
fetches as before, and the proof comes alone (as it does when the caller holds the snapshot).
Nothing here is signed by the server: the agent verifies the snapshot and the proof as if it had
fetched them.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import delta
from invsync.agent.report.body import ReportBody
from invsync.server.storage import StoredReport
from invsync.v1 import invsync_pb2 as pb

if TYPE_CHECKING:
    from invsync.server.exchange import Exchange

log = logging.getLogger("invsync.server")

# A unary answer holds what it carries at once: larger snapshots stream through FetchSnapshot.
MAX_ATTACHED_BYTES = 4 << 20


def peer_snapshot(
    exchange: Exchange,
    party: str,
    stored: StoredReport,
    body: ReportBody,
    request: pb.GetReportRequest,
    held: int,
) -> pb.PeerSnapshot | None:
    """The peer's snapshot the report names for `party`, with the proof of its checkpoint
    against the log size `held` (what the caller holds, or will once it verified the log
    update of the same answer); None when it is not to be attached (see the module)."""
    try:
        side = body.subordinate if body.root.party == party else body.root
        if side.version == 0:
            return None
        held_already = request.peer_base_sha256.hex() == side.digest
        if held_already:  # only its checkpoint is read: no whole set is rebuilt for it
            env, full = exchange.peer_snapshot(party, stored.pairing, side.version), b""
        else:
            env, full = exchange.fetch_peer_snapshot(
                party, stored.pairing, side.version, request.peer_base_sha256
            )
        if hashlib.sha256(env.payload).hexdigest() != side.digest:
            return None  # the report names another snapshot of that version: fetched instead
        note = delta.accepted_header(env.payload).log_checkpoint
        first, second, proof = exchange.proof_between(party, held, note)
    except InvsyncError as e:  # the answer is the report: what comes with it may be left out
        log.warning(
            "party=%s pairing=%s: no peer snapshot with the report: %s", party, stored.pairing, e
        )
        return None
    attached = pb.PeerSnapshot(
        version=side.version,
        base_sha256=request.peer_base_sha256,
        consistency=proof,
        consistency_first=first,
        consistency_second=second,
    )
    if not (held_already or full or len(env.payload) > MAX_ATTACHED_BYTES):
        attached.envelope.CopyFrom(env.to_pb())
    return attached
