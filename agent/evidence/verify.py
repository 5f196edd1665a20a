"""Offline verification of an evidence bundle: no network, no configuration, pinned keys only.

The checks run in this order, and the first that fails is reported (`CheckFailed` names the
check and the entry, checkpoint or file):

1. manifest      every file has the SHA-256 the manifest lists, no file is unlisted, and the
                 manifest names the server the verifier was told (`--server`)
2. checkpoint-signature  every checkpoint is signed by a key of the server in force for its
                 size: pinned, or announced in the log by the key it replaces
3. fork          checkpoints of one tree size have one root
4. consistency   each checkpoint is consistent with the next larger one
5. inclusion     every entry is in the latest checkpoint (its exact bytes hashed first)
6. scope         the bundle withholds only what its (unsigned) scope lets it
7. signature     every envelope is signed by a key in force where it stands in the log
8. chain         each party's snapshots of a pairing form one chain, without equivocation,
                 but for the operator's signed chain resets
9. receipt       every receipt acknowledges its snapshot, at the entry it names
10. report       every report is rebuilt byte for byte from the snapshots it names, and every
                 co-signature is on a report of the log

A bundle that cannot be read at all is a `BundleError` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from invsync.agent.evidence.bundle import MANIFEST, Bundle
from invsync.agent.evidence.chains import check_chains
from invsync.agent.evidence.directory import read_bundle
from invsync.agent.evidence.entries import LoggedEntry, parse_entries
from invsync.agent.evidence.failures import CheckFailed
from invsync.agent.evidence.logproof import VerifiedLog, verify_log
from invsync.agent.evidence.receipts import check_receipts
from invsync.agent.evidence.reports import check_reports
from invsync.agent.evidence.signatures import check_signatures
from invsync.agent.evidence.trust import PinnedIds, Trust
from invsync.agent.evidence.withheld import check_scope
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.exchange.keyring import Rotation
from invsync.agent.exchange.receipt import Receipt
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import ReportBody


@dataclass(frozen=True)
class VerifiedBundle:
    """Everything a bundle that passed every check established, for the timeline."""

    bundle: Bundle
    pins: PinnedIds
    log: VerifiedLog
    entries: tuple[LoggedEntry, ...]
    snapshots: dict[int, Snapshot]
    rotations: tuple[tuple[int, Rotation], ...]
    receipts: dict[int, Receipt]
    reports: dict[int, ReportBody]
    resets: dict[int, ChainReset]


def verify_bundle(root: Path, pins: PinnedIds, server: str) -> VerifiedBundle:
    """Run every check on the bundle at `root` in order; CheckFailed at the first failure.
    `server` is the exchange server's name as the verifier knows it (out of band, like the
    pins): the manifest is unsigned, so it must not choose which pinned name plays the server."""
    bundle = read_bundle(root)
    if bundle.server != server:
        raise CheckFailed(
            "manifest",
            MANIFEST,
            f"names the server {bundle.server!r}, not {server!r} (--server)",
        )
    return verify_content(bundle, pins)


def verify_content(bundle: Bundle, pins: PinnedIds) -> VerifiedBundle:
    """Checks 2 to 10 on a bundle already read, with `bundle.server` as the server's name."""
    trust = Trust(bundle.server, pins, bundle.keys.by_id())
    log = verify_log(bundle, trust.server_keys("checkpoint-signature", _first(bundle)))
    trust.server_ring = log.server_ring
    check_scope(bundle, log.leaves)
    entries = parse_entries(log.leaves)
    signed = check_signatures(entries, trust)
    snapshots = signed.snapshots
    check_chains(snapshots, signed.resets)
    receipts = check_receipts(entries, log, trust)
    reports = check_reports(entries, snapshots, trust, signed.resets)
    return VerifiedBundle(
        bundle,
        pins,
        log,
        tuple(entries),
        snapshots,
        tuple(trust.rotations),
        receipts,
        reports,
        signed.resets,
    )


def _first(bundle: Bundle) -> str:
    return bundle.checkpoints[0].name if bundle.checkpoints else "checkpoints/"
