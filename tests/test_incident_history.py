"""An incident's history from an agent's real SQLite database: the first of the party's
signed snapshots holding each certificate and the first recording its revocation (SECOM's
three snapshots of the demo data: without the OV certificate of bug 1695993, with it, and with
it revoked on 2021-03-09 as it was in reality)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.report.incident import Incident, incident_draft
from invsync.agent.report.incident_history import sightings
from invsync.agent.report.incident_select import select
from invsync.agent.store.agent_store import AgentStore
from tests.exchange_rig import PAIRING, payload
from tests.report_helpers import DV_BUG, OV_BUG, SECOM_LOG, demo_body

REVOKED = Revocation(datetime(2021, 3, 9, tzinfo=UTC), "superseded", "crl:/var/lib/secom/x.crl")
SIGNED = [datetime(2021, 1, 1, tzinfo=UTC) + timedelta(days=30 * n) for n in range(3)]


def _versions() -> list[list[CertRecord]]:
    without = [r for r in SECOM_LOG if r.sha256 != OV_BUG]
    revoked = [
        r.with_view(revocation=REVOKED, revocation_evidence=(REVOKED,)) if r.sha256 == OV_BUG else r
        for r in SECOM_LOG
    ]
    return [without, list(SECOM_LOG), revoked]


def _store(path: Path) -> AgentStore:
    store = AgentStore(path)
    for version, records in enumerate(_versions(), start=1):
        data = payload(records, "secom", version=version, issued_at=SIGNED[version - 1])
        store.record_sent_snapshot(
            PAIRING, version, data, SNAPSHOT_PAYLOAD_TYPE, [], SIGNED[version - 1],
            SIGNED[version - 1] + timedelta(days=90),
        )  # fmt: skip
    return store


def _digest(version: int) -> str:
    records = _versions()[version - 1]
    data = payload(records, "secom", version=version, issued_at=SIGNED[version - 1])
    return hashlib.sha256(data).hexdigest()


def test_the_first_snapshot_holding_and_the_first_recording_the_revocation(tmp_path: Path) -> None:
    with _store(tmp_path / "secom.db") as store:
        found = sightings(store, PAIRING, frozenset({OV_BUG, DV_BUG}))
    held = {(s.sha256, s.mark.version) for s in found if s.revoked is None}
    assert held == {(DV_BUG, 1), (OV_BUG, 2)}
    [revoked] = [s for s in found if s.revoked is not None]
    assert (revoked.sha256, revoked.mark.version, revoked.revoked) == (OV_BUG, 3, REVOKED)
    assert revoked.mark.digest == _digest(3) and revoked.mark.issued_at == SIGNED[2]


def test_the_draft_cites_the_snapshots_and_never_the_crl_path(tmp_path: Path) -> None:
    with _store(tmp_path / "secom.db") as store:
        found = sightings(store, PAIRING, frozenset({OV_BUG, DV_BUG}))
    body = demo_body()
    chosen = select(body.findings, [f"missing-at-subordinate:{OV_BUG}"])
    text = incident_draft(Incident(chosen, (body,), tuple(found)))
    assert (
        f"| 2021-01-31T00:00:00Z | first in secom's signed inventory: 21C066332D6B92DD "
        f"| secom snapshot v2 sha256:{_digest(2)} |"
    ) in text
    assert (
        "| 2021-03-09T00:00:00Z | 21C066332D6B92DD revoked (superseded), as secom's snapshot "
        f"records it | secom snapshot v3 sha256:{_digest(3)} |"
    ) in text
    assert "- **Non-compliance end date:** 2021-03-09T00:00:00Z (the last revocation)" in text
    assert "/var/lib/secom" not in text and "x.crl" not in text
