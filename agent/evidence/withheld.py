"""Check 6: the bundle is what its scope says, and withholds only what that scope lets it.

The scope is an unsigned label in the manifest, so it is checked against the entries rather than
believed: "all pairings" (the server's export) withholds nothing; "pairing P" holds only P's
entries, and P must have an entry in the log (a label naming a pairing the log never saw proves
nothing about it); "pairings of party X" (an agent's export) holds what the server served X.
A withheld entry of a pairing or party bundle is accepted as another pairing's: its leaf hash is
in the tree, but nothing can show whose it is (docs/evidence.md, what a bundle cannot prove).

It runs on the held entries' bytes, proven in the log by check 5, before they are parsed for
check 7: an entry that is no LogEntry is left to check 7 to name.
"""

from __future__ import annotations

from collections.abc import Mapping

from invsync.agent.errors import InvsyncError
from invsync.agent.evidence.bundle import MANIFEST, Bundle
from invsync.agent.evidence.failures import CheckFailed, entry
from invsync.agent.exchange.log_entry import parse_log_entry
from invsync.v1 import invsync_pb2 as pb

CHECK = "scope"


def check_scope(bundle: Bundle, leaves: Mapping[int, bytes]) -> None:
    """Check 6; CheckFailed names the first entry outside the scope, or the manifest."""
    scope = bundle.scope
    if scope.pairing is None and scope.party is None:
        first = next((e.index for e in bundle.entries if e.withheld), None)
        if first is not None:
            raise CheckFailed(
                CHECK,
                entry(first),
                "withheld (a leaf hash alone), but the bundle's scope is all pairings: an export "
                "of all pairings withholds nothing",
            )
    if scope.pairing is not None:
        _one_pairing(scope.pairing, leaves)


def _one_pairing(pairing: str, leaves: Mapping[int, bytes]) -> None:
    for index in sorted(leaves):
        held = _pairing_of(index, leaves[index])
        if held is not None and held != pairing:
            raise CheckFailed(
                CHECK,
                entry(index),
                f"an entry of pairing {held!r}, outside the bundle's scope (pairing {pairing})",
            )
    if not leaves:
        raise CheckFailed(
            CHECK, MANIFEST, f"the scope names pairing {pairing!r}, which has no entry in the log"
        )


def _pairing_of(index: int, leaf: bytes) -> str | None:
    """The entry's pairing; None for one every scope holds (the server's key announcement,
    which every reader needs), or for bytes that are no LogEntry (check 7 names them)."""
    try:
        logged = parse_log_entry(leaf, entry(index))
    except InvsyncError:
        return None
    return None if logged.kind == pb.LOG_ENTRY_KIND_SERVER_KEY else logged.pairing


def withheld_count(bundle: Bundle) -> int:
    return sum(1 for e in bundle.entries if e.withheld)
