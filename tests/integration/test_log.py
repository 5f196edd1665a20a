"""The transparency log over a real server process and mutual TLS: what the parties' exchanges
append, and that every checkpoint, entry and proof the server serves verifies against the
server key the agents pin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import Checkpoint, open_checkpoint
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet, Refused, rejection_rule
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keys import VerifyKey, load_signing_key, load_verify_key
from invsync.agent.exchange.receipt import decode_receipt, logged_checkpoint
from invsync.agent.exchange.snapshot import build_payload, sign_snapshot
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import Federation, await_report

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"
SERVER = "demo-exchange"  # server.name in localfed's server.toml
K = pb.LogEntryKind


def _snapshot(fed: Federation, party: str, signer: str | None = None) -> Envelope:
    now = datetime.now(UTC)
    data = build_payload(
        party=party,
        pairing=PAIRING,
        role=ROOT if party == "secom" else SUBORDINATE,
        version=1,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        records=[],
    )
    return sign_snapshot(data, load_signing_key(fed.work / "keys" / f"{signer or party}.key"))


def _cosign(fed: Federation, client: ExchangeClient, party: str) -> None:
    report = client.report(PAIRING)
    key = load_signing_key(fed.work / "keys" / f"{party}.key")
    sig = key.sign(pae(REPORT_PAYLOAD_TYPE, report.envelope.payload))
    client.sign_report(PAIRING, report.report_id, Sig(key.keyid, sig))


def _pinned(fed: Federation) -> dict[str, VerifyKey]:
    return {SERVER: load_verify_key(fed.work / "keys" / "server.pub")}


def _head(fed: Federation, client: ExchangeClient, size: int = 0) -> Checkpoint:
    return open_checkpoint(client.checkpoint(size), SERVER, _pinned(fed))


def _exchange(fed: Federation, secom: ExchangeClient, jprs: ExchangeClient) -> dict[str, Envelope]:
    """Each party pushes, then both co-sign the report on both; the receipts by party."""
    # Reports are made off the push (server/report_worker.py): waiting for each keeps the
    # log's order fixed.
    receipts = {"secom": secom.push(_snapshot(fed, "secom"))}
    await_report(secom, 1, 0)
    receipts["jprs"] = jprs.push(_snapshot(fed, "jprs"))
    await_report(jprs, 1, 1)
    _cosign(fed, jprs, "jprs")
    _cosign(fed, secom, "secom")
    return receipts


def test_the_log_records_each_exchange_and_everything_it_serves_verifies(
    federation: Federation,
) -> None:
    secom, jprs = federation.client("secom"), federation.client("jprs")
    receipts = _exchange(federation, secom, jprs)
    head = _head(federation, jprs)
    leaves = jprs.log_entries(0, head.size)
    try:
        entries = [pb.LogEntry.FromString(leaf) for leaf in leaves]
        assert [(e.kind, e.party, e.version) for e in entries] == [
            (K.LOG_ENTRY_KIND_SNAPSHOT, "secom", 1),
            (K.LOG_ENTRY_KIND_RECEIPT, "secom", 1),
            (K.LOG_ENTRY_KIND_REPORT, "", 0),
            (K.LOG_ENTRY_KIND_SNAPSHOT, "jprs", 1),
            (K.LOG_ENTRY_KIND_RECEIPT, "jprs", 1),
            (K.LOG_ENTRY_KIND_REPORT, "", 0),
            (K.LOG_ENTRY_KIND_REPORT_SIGNATURE, "jprs", 0),
            (K.LOG_ENTRY_KIND_REPORT_SIGNATURE, "secom", 0),
        ]
        assert {e.pairing for e in entries} == {PAIRING}
        assert entries[5].report_id == entries[7].report_id == jprs.report(PAIRING).report_id
        # Byte for byte the same, whoever asks and however often.
        assert secom.log_entries(0, head.size) == leaves == jprs.log_entries(0, head.size)
        assert head.root == tlog.root([tlog.leaf_hash(leaf) for leaf in leaves])
        for index, leaf in enumerate(leaves):
            proof = secom.inclusion_proof(index, head.size)
            tlog.verify_inclusion(tlog.leaf_hash(leaf), index, head.size, proof, head.root)
        heads = [_head(federation, secom, n) for n in range(1, head.size + 1)]
        for first in heads:
            for second in heads[first.size - 1 :]:
                proof = jprs.consistency_proof(first.size, second.size)
                tlog.verify_consistency(first.size, second.size, first.root, second.root, proof)
        for party, index in (("secom", 0), ("jprs", 3)):
            receipt = decode_receipt(receipts[party])
            assert receipt.log_index == index
            logged = logged_checkpoint(receipt, _pinned(federation))
            assert logged == heads[index]  # the checkpoint signed as the snapshot went in
            proof = jprs.inclusion_proof(index, logged.size)
            tlog.verify_inclusion(
                tlog.leaf_hash(leaves[index]), index, logged.size, proof, logged.root
            )
    finally:
        secom.close()
        jprs.close()


def test_the_checkpoint_is_a_signed_note_existing_tooling_reads(federation: Federation) -> None:
    jprs = federation.client("jprs")
    with pytest.raises(NotFoundYet, match=re.escape("the log has no checkpoint yet")):
        jprs.checkpoint()
    jprs.push(_snapshot(federation, "jprs"))
    await_report(jprs, 0, 1)
    note = jprs.checkpoint().decode()
    jprs.close()
    body, blank, signature = note.partition("\n\n")
    origin, size, root = body.split("\n")
    assert (blank, origin, size) == ("\n\n", SERVER, "3")  # snapshot, receipt, report
    assert re.fullmatch("[A-Za-z0-9+/]{43}=", root)
    assert re.fullmatch(f"\u2014 {SERVER} [A-Za-z0-9+/]+=*\n", signature)


def test_a_refused_push_appends_nothing_and_a_range_over_the_cap_is_refused(
    federation: Federation,
) -> None:
    jprs = federation.client("jprs")
    try:
        jprs.push(_snapshot(federation, "jprs"))
        await_report(jprs, 0, 1)
        note = jprs.checkpoint()
        with pytest.raises(Refused) as refused:
            jprs.push(_snapshot(federation, "jprs", signer="secom"))
        assert rejection_rule(refused.value) == "untrusted-signer"
        assert jprs.checkpoint() == note
        assert _head(federation, jprs).size == 3
        with pytest.raises(
            Refused,
            match=re.escape(
                "GetLogEntries: INVALID_ARGUMENT: log entries 0..257: 257 asked for, "
                "at most 256 per request"
            ),
        ):
            jprs.log_entries(0, 257)
        with pytest.raises(NotFoundYet, match=re.escape("the log has 3 entries, not 4")):
            jprs.inclusion_proof(0, 4)
    finally:
        jprs.close()
