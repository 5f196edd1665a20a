"""`log-split-view`, seen in the two snapshot headers alone: each carries the latest checkpoint
of the exchange's log its party's agent verified, and the two are of one tree size with
different root hashes. One log cannot have both: the exchange showed the parties different logs.

Each agent checks its peer's checkpoint before it co-signs, with the pinned server key and a
consistency proof for checkpoints of different sizes (`agent.daemon.log_watch`, which makes the
same code). This rule has no key and no server to ask, only what both parties signed in their
headers, so it compares the bodies as claimed (`claimed_checkpoint`) and only in the one case
that needs no proof: same log, same size, other root. Because the agents rebuild the report
byte for byte, the server cannot leave the finding out of the report it signs.
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.exchange.checkpoint import claimed_checkpoint
from invsync.agent.model.findings import LOG_SPLIT_VIEW, Finding, make_finding
from invsync.agent.reconcile.rules.context import Context


def check(ctx: Context) -> Iterable[Finding]:
    root, sub = ctx.root_side.header, ctx.sub_side.header
    if root is None or sub is None:
        return
    ours, theirs = claimed_checkpoint(root.log_checkpoint), claimed_checkpoint(sub.log_checkpoint)
    if ours is None or theirs is None:
        return  # one side verified none yet (or carries no note): nothing to compare
    if (ours.origin, ours.size) == (theirs.origin, theirs.size) and ours.root != theirs.root:
        yield make_finding(
            LOG_SPLIT_VIEW,
            sha256="",
            subject="",
            party="",  # the exchange operator acts
            message=(
                f"{root.party}'s snapshot version {root.version} and {sub.party}'s version "
                f"{sub.version} carry checkpoints of log {ours.origin!r} of size {ours.size} "
                "with different root hashes: the exchange showed the two parties different logs"
            ),
        )
