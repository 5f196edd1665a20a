"""Check 8: each party's snapshots of each pairing form one chain, in log order.

As the server's acceptance rules demand (DESIGN §5), and here over the whole history: versions
only increase, each snapshot names its predecessor's digest (the first one in the log names
none, or the log does not hold the whole chain), no version appears twice (with other content
that is equivocation), and each party keeps one role in a pairing whose two roles are held by
two parties.
"""

from __future__ import annotations

from collections.abc import Mapping

from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.model.snapshot import Snapshot, SnapshotHeader

CHECK = "chain"


def check_chains(snapshots: Mapping[int, Snapshot]) -> None:
    """Check 8 over every snapshot, in log order (`snapshots` by entry index)."""
    last: dict[tuple[str, str], tuple[int, Snapshot]] = {}
    holders: dict[tuple[str, str], tuple[str, int]] = {}  # (pairing, role) -> (party, entry)
    for index in sorted(snapshots):
        snapshot = snapshots[index]
        header = snapshot.header
        _check_role(holders, header, index)
        _check_link(last.get((header.party, header.pairing)), snapshot, index)
        last[(header.party, header.pairing)] = (index, snapshot)


def _check_role(
    holders: dict[tuple[str, str], tuple[str, int]], header: SnapshotHeader, index: int
) -> None:
    for role, (party, first) in holders.items():
        if role[0] == header.pairing and party == header.party and role[1] != header.role:
            raise CheckFailed(
                CHECK,
                entry(index),
                f"{header.party} is the {header.role} of pairing {header.pairing} here, but the "
                f"{role[1]} at entry {first}",
            )
    holder, first = holders.setdefault((header.pairing, header.role), (header.party, index))
    if holder != header.party:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"{header.party} claims the {header.role} of pairing {header.pairing}, which "
            f"{holder} holds since entry {first}",
        )


def _check_link(previous: tuple[int, Snapshot] | None, snapshot: Snapshot, index: int) -> None:
    header = snapshot.header
    who = f"{header.party} in pairing {header.pairing}"
    if previous is None:
        if header.previous_digest:
            raise CheckFailed(
                CHECK,
                entry(index),
                f"the first snapshot of {who} in the log (version {header.version}) names a "
                f"predecessor ({header.previous_digest.hex()[:16]}) the log does not hold",
            )
        return
    before_index, before = previous
    _check_version(before_index, before, snapshot, index)
    if header.previous_digest.hex() != before.payload_sha256:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"version {header.version} of {who} names predecessor "
            f"{header.previous_digest.hex()[:16] or '(none)'}, not version "
            f"{before.header.version} (entry {before_index}, {before.payload_sha256[:16]}): "
            "the chain is broken",
        )


def _check_version(before_index: int, before: Snapshot, snapshot: Snapshot, index: int) -> None:
    header, old = snapshot.header, before.header.version
    who = f"{header.party} in pairing {header.pairing}"
    if header.version == old and snapshot.payload_sha256 != before.payload_sha256:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"equivocation: version {old} of {who} is also at entry {before_index}, with other "
            "content",
        )
    if header.version <= old:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"version {header.version} of {who} comes after version {old} (entry "
            f"{before_index}): versions must increase",
        )
