"""server/metrics.py through the exchange in process: rejections counted by their rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from invsync.agent.exchange import rejections as acc
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.server import metrics
from tests.exchange_rig import PAIRING, Keys, make_rig, payload


def _count(party: str, pairing: str, result: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "invsync_snapshots_received_total",
        {"party": party, "pairing": pairing, "result": result, "reason": reason},
    )
    return value or 0.0


def test_a_rejected_push_counts_under_its_rule(
    tmp_path: Path,
    keys: Keys,
    records: list[CertRecord],
) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    try:
        rule = acc.UntrustedSignerError.rule
        assert rule == "untrusted-signer"
        # A refused push names its pairing only from a verified header: this one has none.
        before = _count("jprs", metrics.UNKNOWN, "rejected", rule)
        accepted_before = _count("jprs", PAIRING, "accepted", "")
        forged = sign_snapshot(payload(records), keys.stranger)  # not jprs's pinned key
        with pytest.raises(acc.UntrustedSignerError):
            rig.push(forged, "jprs")
        assert _count("jprs", metrics.UNKNOWN, "rejected", rule) == before + 1
        assert _count("jprs", PAIRING, "accepted", "") == accepted_before
        rig.push(sign_snapshot(payload(records), keys.jprs), "jprs")
        assert _count("jprs", PAIRING, "accepted", "") == accepted_before + 1
        last = metrics.REGISTRY.get_sample_value(
            "invsync_last_accepted_snapshot_timestamp_seconds",
            {"party": "jprs", "pairing": PAIRING},
        )
        assert last == rig.clock.now.timestamp()
    finally:
        rig.store.close()
