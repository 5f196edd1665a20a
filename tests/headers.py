"""A snapshot header for reconciling sides in tests: version 1 of a party's chain, issued an
hour before the time compared and valid long enough for it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from invsync.agent.model.acknowledgements import Acknowledgement
from invsync.agent.model.snapshot import ROOT, SnapshotHeader


def header(
    party: str,
    pairing: str,
    at: datetime,
    *,
    role: str = ROOT,
    scope: Sequence[bytes] = (),
    acknowledgements: tuple[Acknowledgement, ...] = (),
    valid_for: timedelta = timedelta(days=1),
) -> SnapshotHeader:
    """`scope`: the root's issuer keys (SPKI DER) the header commits to."""
    return SnapshotHeader(
        party=party,
        pairing=pairing,
        role=role,
        version=1,
        issued_at=at - timedelta(hours=1),
        expires_at=at + valid_for,
        previous_digest=b"",
        record_count=0,
        records_digest=b"",
        scope_issuer_spki=tuple(scope),
        acknowledgements=acknowledgements,
    )
