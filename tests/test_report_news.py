"""Fewer calls per cycle (issue 13): a long poll for a report is answered when the report it
waits for is stored or signed, or, when its time is up, with the latest report as it stands;
the latest checkpoint comes with the consistency proof from the one the caller holds."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

import pytest

from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import claimed_checkpoint
from invsync.agent.exchange.envelope import Sig, pae
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, parse_report_body
from invsync.server.report_news import MAX_WAIT_SECONDS, ReportWait
from invsync.server.storage import StoredReport
from tests.exchange_rig import PAIRING, Rig, payload


@pytest.fixture
def secom_v1(rig: Rig, records: list[CertRecord]) -> bytes:
    data = payload(records, "secom")
    rig.push(sign_snapshot(data, rig.keys.secom), "secom")
    return data


def waiting(call: Callable[[], StoredReport]) -> tuple[threading.Thread, list[StoredReport]]:
    answers: list[StoredReport] = []
    thread = threading.Thread(target=lambda: answers.append(call()))
    thread.start()
    return thread, answers


def sign(rig: Rig, party: str, stored: StoredReport) -> None:
    key = rig.keys.of(party)
    sig = Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)))
    rig.exchange.add_signature(party, PAIRING, stored.report_id, sig)


def test_a_waiting_call_is_answered_when_the_report_naming_the_snapshot_is_made(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    jprs = payload(records)
    naming = hashlib.sha256(jprs).hexdigest()
    wait = ReportWait("jprs", naming, "", 15)
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    assert answers == []  # the latest report names no snapshot of jprs yet: still waiting
    started = time.monotonic()
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    thread.join(10)
    assert time.monotonic() - started < 5
    body = parse_report_body(answers[0].envelope.payload)
    assert body.subordinate.digest == naming


def test_a_call_past_a_signed_report_is_answered_once_the_peer_signed_it(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    latest = rig.store.report(PAIRING)
    assert latest is not None
    sign(rig, "jprs", latest)
    wait = ReportWait("jprs", hashlib.sha256(jprs).hexdigest(), latest.report_id, 15)
    thread, answers = waiting(lambda: rig.exchange.report("jprs", PAIRING, "", wait))
    time.sleep(0.3)
    assert answers == []  # secom has not signed: still waiting
    sign(rig, "secom", latest)
    thread.join(10)
    assert answers[0].report_id == latest.report_id
    assert len(answers[0].envelope.signatures) == 3


def test_when_the_time_is_up_the_latest_report_is_answered_as_it_stands(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    wait = ReportWait("jprs", "ab" * 32, "", 1)
    started = time.monotonic()
    stored = rig.exchange.report("jprs", PAIRING, "", wait)
    assert time.monotonic() - started >= 0.9
    assert stored.report_id == rig.store.report(PAIRING).report_id  # type: ignore[union-attr]


def test_a_report_id_is_answered_without_waiting(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    first = rig.store.report(PAIRING)
    assert first is not None
    wait = ReportWait("jprs", "ab" * 32, "", MAX_WAIT_SECONDS)
    started = time.monotonic()
    assert rig.exchange.report("jprs", PAIRING, first.report_id, wait) == first
    assert time.monotonic() - started < 1


def test_what_a_wait_is_met_by(rig: Rig, records: list[CertRecord], secom_v1: bytes) -> None:
    stored = rig.store.report(PAIRING)
    assert stored is not None
    digest = hashlib.sha256(secom_v1).hexdigest()
    assert ReportWait("secom", digest, "", 1).met_by(stored)
    assert not ReportWait("secom", "00" * 32, "", 1).met_by(stored)
    assert ReportWait("secom", digest, "another report", 1).met_by(stored)
    assert not ReportWait("secom", digest, stored.report_id, 1).met_by(stored)  # not signed


def test_the_latest_checkpoint_comes_with_the_proof_from_the_one_held(
    rig: Rig, records: list[CertRecord], secom_v1: bytes
) -> None:
    """One call instead of two in the log watch (issue 13): GetCheckpoint with proof_from."""
    rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    held = claimed_checkpoint(rig.store.checkpoint(2) or b"")
    assert held is not None and held.size == 2
    note, proof, size = rig.exchange.checkpoint_and_proof("jprs", 2)
    latest = claimed_checkpoint(note)
    assert latest is not None and size == latest.size == rig.store.log_size() > 2
    tlog.verify_consistency(2, size, held.root, latest.root, proof)
    assert rig.exchange.checkpoint_and_proof("jprs", size)[1:] == ([], 0)  # nothing to prove
    assert rig.exchange.checkpoint_and_proof("jprs", size + 5)[1:] == ([], 0)
