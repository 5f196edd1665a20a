"""Check 8: each party's snapshots of each pairing form one chain, in log order.

As the server's acceptance rules demand (DESIGN §5), and here over the whole history: versions
only increase, each snapshot names its predecessor's digest (the first one in the log names
none, or the log does not hold the whole chain), no version appears twice (with other content
that is equivocation), and each party keeps one role in a pairing whose two roles are held by
two parties. A chain reset by the exchange operator (a CHAIN_RESET entry, its signature checked
by check 7) names the version the chain continues from, which the log must hold (or 0), and
every version above it the log holds since the last reset; the next snapshot follows that
version, as the server accepts it.
"""

from __future__ import annotations

from collections.abc import Mapping

from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.model.snapshot import Snapshot, SnapshotHeader

CHECK = "chain"
Chain = dict[int, tuple[int, Snapshot]]  # version -> (entry index, snapshot), not set aside


def check_chains(
    snapshots: Mapping[int, Snapshot], resets: Mapping[int, ChainReset] | None = None
) -> None:
    """Check 8 over every snapshot and chain reset, in log order (each by entry index)."""
    resets = resets or {}
    last: dict[tuple[str, str], tuple[int, Snapshot] | None] = {}
    chains: dict[tuple[str, str], Chain] = {}
    holders: dict[tuple[str, str], tuple[str, int]] = {}  # (pairing, role) -> (party, entry)
    for index in sorted({*snapshots, *resets}):
        if index in resets:
            reset = resets[index]
            key = (reset.party, reset.pairing)
            chain = chains.setdefault(key, {})
            last[key] = _after_reset(chain, reset, index)
            # What the server keeps: every version up to the one continued from, so a later
            # reset may continue from any of them.
            chains[key] = {v: held for v, held in chain.items() if v <= reset.continues_from}
            continue
        snapshot = snapshots[index]
        header = snapshot.header
        key = (header.party, header.pairing)
        _check_role(holders, header, index)
        _check_link(last.get(key), snapshot, index)
        last[key] = (index, snapshot)
        chains.setdefault(key, {})[header.version] = (index, snapshot)


def _after_reset(chain: Chain, reset: ChainReset, index: int) -> tuple[int, Snapshot] | None:
    """The snapshot the reset chain continues from (None: from nothing), once the reset names
    every version above it that the log holds."""
    who = f"{reset.party} in pairing {reset.pairing}"
    above = sorted(v for v in chain if v > reset.continues_from)
    unnamed = [v for v in above if v not in reset.superseded]
    if unnamed:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"the chain reset of {who} sets aside versions "
            f"{', '.join(map(str, reset.superseded)) or 'none'}, but the log holds "
            f"{', '.join(map(str, unnamed))} above version {reset.continues_from} as well",
        )
    if not reset.continues_from:
        return None
    held = chain.get(reset.continues_from)
    if held is None:
        raise CheckFailed(
            CHECK,
            entry(index),
            f"the chain reset of {who} continues from version {reset.continues_from}, which "
            "the log does not hold",
        )
    return held


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
