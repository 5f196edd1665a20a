"""A pairing's trusted state (agent/exchange/trusted.py) for tests: secom's, with receipts,
reports and jprs's snapshots made and signed as the server and jprs make them."""

from __future__ import annotations

import hashlib
from typing import Any

from invsync.agent.exchange import envelope
from invsync.agent.exchange.acceptance import PairingPolicy, PartyPolicy
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import SigningKey
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE
from invsync.agent.exchange.record_codec import timestamp
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.exchange.trusted import (
    DocumentFormat,
    PairingTrust,
    TrustedState,
)
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
)
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, payload

POLICY = PairingPolicy(PAIRING, root="secom", subordinate="jprs")
REPORTS = DocumentFormat(REPORT_PAYLOAD_TYPE, parse_report_body)
OWN = b"secom's snapshot payload, as pushed"


def make_trust(keys: Keys, state: TrustedState | None = None) -> PairingTrust[ReportBody]:
    """secom's trusted state of its pairing with jprs, from `state` (default: nothing yet)."""
    return PairingTrust(
        party="secom",
        pairing=POLICY,
        server_keys={keys.server.keyid: keys.server.public},
        peer=PartyPolicy("jprs", {keys.jprs.keyid: keys.jprs.public}),
        reports=REPORTS,
        state=state,
    )


def receipt(key: SigningKey, *, version: int = 1, data: bytes = OWN, **changes: object) -> Envelope:
    """The server's receipt for secom's `version` with payload `data`, fields replaced."""
    fields: dict[str, Any] = {
        "party": "secom",
        "pairing": PAIRING,
        "version": version,
        "payload_sha256": hashlib.sha256(data).digest(),
        "accepted_at": timestamp(NOW),
        "server": SERVER,
        "log_index": 0,
        "checkpoint": sign_checkpoint(Checkpoint(SERVER, 1, b"\x01" * 32), SERVER, key),
    }
    fields.update(changes)
    return envelope.sign(RECEIPT_PAYLOAD_TYPE, pb.ReceiptBody(**fields).SerializeToString(), [key])


def report(keys: Keys, *, pairing: str = PAIRING) -> Envelope:
    """A report body on secom v1 and jprs v1, signed by the server as the server signs it."""
    signers = [
        Signer("server", SERVER, keys.server.keyid, keys.server.public.spki_der),
        Signer("root", "secom", keys.secom.keyid, keys.secom.public.spki_der),
        Signer("subordinate", "jprs", keys.jprs.keyid, keys.jprs.public.spki_der),
    ]
    body = build_report_body(
        pairing=pairing,
        as_of=NOW,
        root=SnapshotRef("secom", "root", 1, "a" * 64),
        subordinate=SnapshotRef("jprs", "subordinate", 1, "b" * 64),
        findings=[],
        signers=signers,
    )
    return envelope.sign(REPORT_PAYLOAD_TYPE, body, [keys.server])


def jprs(
    keys: Keys, records: list[CertRecord], version: int, key: SigningKey | None = None, **kw: Any
) -> Envelope:
    """jprs's snapshot `version` (fewer records in odd versions, so versions differ)."""
    data = payload(records[version % 2 :], version=version, **kw)
    return sign_snapshot(data, key or keys.jprs)
