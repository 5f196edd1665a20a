"""The exchange's domain logic in process (no gRPC): a real SQLite store, real keys, real certs.

Every rejection is pinned by class, message and gRPC status, and must leave the store as it
was: no snapshot row, no report. The accepted path checks the signed receipt, the report made
once both sides pushed, idempotent re-pushes, peer fetches and report co-signatures.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.envelope import Envelope, Sig, pae, verify_or_raise
from invsync.agent.exchange.merkle import records_digest
from invsync.agent.exchange.receipt import (
    RECEIPT_PAYLOAD_TYPE,
    MalformedReceipt,
    Receipt,
    decode_receipt,
)
from invsync.agent.exchange.rejections import AccessDenied, BadReportSignature, NotFound, status_of
from invsync.agent.exchange.snapshot import decode_payload, sign_snapshot, to_chunks
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, Signer, parse_report_body, verify_report
from invsync.server import reconciling
from invsync.server.reconciling import ReportMaker
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import CHUNK, NOW, PAIRING, SERVER, Keys, Rig, edited, make_rig, payload


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def receipt_of(data: bytes) -> tuple[Envelope, Receipt]:
    env = Envelope.from_pb(pb.Envelope.FromString(data))
    return env, decode_receipt(env)


@dataclass(frozen=True)
class State:
    snapshots: int
    reports: int
    signatures: int
    last: dict[str, acc.LastAccepted | None]


def state(rig: Rig) -> State:
    last = {p: rig.store.last_accepted(p, PAIRING) for p in ("secom", "jprs")}
    return State(rig.snapshots(), rig.reports(), rig.signatures(), last)


def refused(
    rig: Rig,
    call: Callable[[], object],
    kind: type[InvsyncError],
    message: str,
    status: grpc.StatusCode,
) -> InvsyncError:
    """`call` raises `kind` with `message` and `status`, and the store did not change."""
    before = state(rig)
    with pytest.raises(kind, match=re.escape(message)) as caught:
        call()
    assert type(caught.value) is kind
    assert status_of(caught.value) == status
    assert state(rig) == before
    return caught.value


@pytest.fixture
def secom_pushed(rig: Rig, records: list[CertRecord]) -> Envelope:
    """secom's v1 is in (with the report saying jprs sent nothing yet): any jprs snapshot
    accepted now would make a report on both at once."""
    env = sign_snapshot(payload(records, "secom"), rig.keys.secom)  # ECDSA: not deterministic
    rig.push(env, "secom")
    assert (rig.snapshots(), rig.reports()) == (1, 1)
    return env


@pytest.fixture
def jprs_v1(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> bytes:
    data = payload(records)
    rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    assert (rig.snapshots(), rig.reports()) == (2, 2)
    return data


# Rejections: class, message, status, and nothing written.


@pytest.mark.parametrize(
    ("tls_party", "message"),
    [
        (None, "snapshot rejected [unknown-party]: the TLS peer presented no party identity"),
        ("mallory", "TLS identity 'mallory' is not an allowed party (jprs, secom)"),
    ],
)
def test_unknown_tls_identity(
    rig: Rig,
    records: list[CertRecord],
    secom_pushed: Envelope,
    tls_party: str | None,
    message: str,
) -> None:
    env = sign_snapshot(payload(records), rig.keys.jprs)
    refused(
        rig,
        lambda: rig.push(env, tls_party),
        rej.UnknownPartyError,
        message,
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_signed_with_the_key_of_another_party(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    env = sign_snapshot(payload(records), rig.keys.secom)
    refused(
        rig,
        lambda: rig.push(env, "jprs"),
        rej.UntrustedSignerError,
        "snapshot rejected [untrusted-signer]: signed by a key pinned for party 'secom', "
        "not for 'jprs'",
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_signed_with_a_key_pinned_for_nobody(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    env = sign_snapshot(payload(records), rig.keys.stranger)
    refused(
        rig,
        lambda: rig.push(env, "jprs"),
        rej.UntrustedSignerError,
        f"no signature by a key pinned for party 'jprs' (signed by: {rig.keys.stranger.keyid})",
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_tampered_payload(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    data = payload(records)
    env = sign_snapshot(data, rig.keys.jprs)
    flipped = data[:60] + bytes([data[60] ^ 1]) + data[61:]
    tampered = Envelope(env.payload_type, flipped, env.signatures)
    refused(
        rig,
        lambda: rig.push(tampered, "jprs"),
        rej.BadSignatureError,
        f"signature by key {rig.keys.jprs.keyid} pinned for party 'jprs' does not verify "
        "over the received payload",
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_header_party_is_not_the_tls_identity(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    # jprs's TLS identity and jprs's own key, but the header claims to be secom's snapshot.
    env = sign_snapshot(payload(records, "secom", version=2), rig.keys.jprs)
    refused(
        rig,
        lambda: rig.push(env, "jprs"),
        rej.PartyMismatchError,
        "header names party 'secom' but the TLS identity is 'jprs'",
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_unknown_pairing(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    env = sign_snapshot(payload(records, pairing="secom-acme"), rig.keys.jprs)
    refused(
        rig,
        lambda: rig.push(env, "jprs"),
        rej.PairingMismatchError,
        "snapshot rejected [pairing-mismatch]: unknown pairing 'secom-acme'",
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_lower_version(rig: Rig, records: list[CertRecord], jprs_v1: bytes) -> None:
    v2 = payload(records, version=2, previous_digest=hashlib.sha256(jprs_v1).digest())
    rig.push(sign_snapshot(v2, rig.keys.jprs), "jprs")
    older = payload(records, issued_at=NOW - timedelta(minutes=5))
    refused(
        rig,
        lambda: rig.push(sign_snapshot(older, rig.keys.jprs), "jprs"),
        rej.RollbackError,
        "version 1 is below the last accepted version 2 of party 'jprs' in pairing 'secom-jprs'",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_equivocation(rig: Rig, records: list[CertRecord], jprs_v1: bytes) -> None:
    other = payload(records, issued_at=NOW - timedelta(minutes=5))
    refused(
        rig,
        lambda: rig.push(sign_snapshot(other, rig.keys.jprs), "jprs"),
        rej.EquivocationError,
        f"version 1 was already accepted with digest {sha(jprs_v1)}; this one is {sha(other)}",
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert rig.store.snapshot("jprs", PAIRING, 1) == sign_snapshot(jprs_v1, rig.keys.jprs)


def test_broken_chain(rig: Rig, records: list[CertRecord], jprs_v1: bytes) -> None:
    wrong = hashlib.sha256(b"not the last snapshot").digest()
    v2 = payload(records, version=2, previous_digest=wrong)
    refused(
        rig,
        lambda: rig.push(sign_snapshot(v2, rig.keys.jprs), "jprs"),
        rej.ChainError,
        f"previous_digest {wrong.hex()} is not the last accepted digest {sha(jprs_v1)}",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_a_first_snapshot_claiming_a_predecessor_breaks_the_chain(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    data = payload(records, previous_digest=bytes(32))
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.ChainError,
        f"previous_digest {'00' * 32} is not the last accepted digest "
        "(empty: no snapshot accepted yet)",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_expired(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    data = payload(records, expires_at=NOW - timedelta(seconds=1))
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.ExpiredError,
        "expired at 2021-03-01T11:59:59Z (now 2021-03-01T12:00:00Z)",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_expired_by_the_injected_clock(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    # The snapshot is fine at NOW; the exchange must judge it by its clock, not the wall clock.
    env = sign_snapshot(payload(records), rig.keys.jprs)
    rig.clock.now = NOW + timedelta(days=2)
    refused(
        rig,
        lambda: rig.push(env, "jprs"),
        rej.ExpiredError,
        "expired at 2021-03-02T12:00:00Z (now 2021-03-03T12:00:00Z)",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_issued_in_the_future(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    data = payload(records, issued_at=NOW + timedelta(minutes=6))
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.FutureIssuedError,
        "issued_at 2021-03-01T12:06:00Z is more than 0:05:00 after now (2021-03-01T12:00:00Z)",
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_wrong_record_count(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    def bump(msg: pb.SnapshotPayload) -> None:
        msg.header.record_count += 1

    data = edited(payload(records), bump)
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.CountMismatchError,
        f"header says {len(records) - 1} records, the payload holds {len(records) - 2}",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_wrong_records_digest(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    def zero(msg: pb.SnapshotPayload) -> None:
        msg.header.records_digest = bytes(32)

    data = edited(payload(records), zero)
    right = records_digest(r.sha256 for r in records[2:]).hex()
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.DigestMismatchError,
        f"records_digest {'00' * 32} is not the Merkle root {right} of the records",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_duplicate_record(rig: Rig, records: list[CertRecord], secom_pushed: Envelope) -> None:
    def repeat_first(msg: pb.SnapshotPayload) -> None:
        msg.records.add().CopyFrom(msg.records[0])
        identities = [parse_certificate(r.certificate_der).sha256 for r in msg.records]
        msg.header.record_count = len(identities)
        msg.header.records_digest = records_digest(identities)

    data = edited(payload(records), repeat_first)
    first = min(r.sha256 for r in records[2:])
    refused(
        rig,
        lambda: rig.push(sign_snapshot(data, rig.keys.jprs), "jprs"),
        rej.DuplicateRecordError,
        f"record {len(records) - 2} ({first}) repeats record 0",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_stream_without_trailer(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    data = payload(records)
    env = sign_snapshot(data, rig.keys.jprs)
    chunks = [c for c in to_chunks(env, CHUNK) if c.HasField("data")]
    assert len(chunks) > 1
    refused(
        rig,
        lambda: rig.exchange.push("jprs", iter(chunks)),
        rej.IncompleteStream,
        f"stream ended after {len(data)} bytes without a trailer",
        grpc.StatusCode.INVALID_ARGUMENT,
    )


def test_oversized_stream_is_dropped_unread(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    small = make_rig(tmp_path / "small.db", keys, max_snapshot_bytes=2 * CHUNK)
    env = sign_snapshot(payload(records), keys.jprs)
    chunks = list(to_chunks(env, CHUNK))
    assert len(chunks) > 4
    taken: list[pb.SnapshotChunk] = []

    def stream() -> Iterator[pb.SnapshotChunk]:
        for chunk in chunks:
            taken.append(chunk)
            yield chunk

    refused(
        small,
        lambda: small.exchange.push("jprs", stream()),
        rej.StreamTooLarge,
        f"snapshot rejected [stream-too-large]: snapshot stream exceeds the limit of "
        f"{2 * CHUNK} bytes",
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert len(taken) == 3  # stopped at the first chunk past the limit
    small.store.close()


# Accepted


def test_receipt_is_signed_by_the_server_and_names_the_snapshot(
    rig: Rig, records: list[CertRecord]
) -> None:
    data = payload(records)
    receipt = rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    env, body = receipt_of(receipt)
    assert env.payload_type == RECEIPT_PAYLOAD_TYPE
    server = rig.keys.server.public
    verify_or_raise(env, {server.keyid: server}, who="the exchange server (receipt)")
    with pytest.raises(InvsyncError, match=r"signed by untrusted key"):
        verify_or_raise(env, {rig.keys.jprs.keyid: rig.keys.jprs.public}, who="jprs")
    assert (body.party, body.pairing, body.version, body.server) == ("jprs", PAIRING, 1, SERVER)
    assert body.payload_sha256 == hashlib.sha256(data).digest()
    assert body.accepted_at == NOW
    assert rig.store.receipt("jprs", PAIRING, 1) == receipt
    assert rig.store.snapshot("jprs", PAIRING) == sign_snapshot(data, rig.keys.jprs)


def test_only_a_receipt_decodes_as_one(rig: Rig, records: list[CertRecord]) -> None:
    snapshot = sign_snapshot(payload(records), rig.keys.jprs)
    with pytest.raises(MalformedReceipt, match=re.escape("payload type 'application/vnd.invsync")):
        decode_receipt(snapshot)
    garbage = Envelope(RECEIPT_PAYLOAD_TYPE, b"\xff\xff", ())
    with pytest.raises(MalformedReceipt, match="payload is not a ReceiptBody"):
        decode_receipt(garbage)


def test_report_is_made_once_both_sides_pushed_and_signed_by_the_server(
    rig: Rig, records: list[CertRecord]
) -> None:
    with pytest.raises(NotFound, match=re.escape("pairing 'secom-jprs': no report yet")):
        rig.exchange.report("jprs", PAIRING, "")
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    assert rig.reports() == 1
    alone = parse_report_body(rig.exchange.report("jprs", PAIRING, "").envelope.payload)
    assert (alone.root.version, alone.root.digest, alone.subordinate.version) == (0, "", 1)
    assert [(f.code, f.party, f.message) for f in alone.findings] == [
        (
            "stale-peer",
            "secom",
            "secom has not sent a snapshot of pairing secom-jprs yet; nothing was compared. "
            "It must configure its agent for the pairing and send one",
        )
    ]
    secom = payload(records, "secom")
    rig.push(sign_snapshot(secom, rig.keys.secom), "secom")
    assert rig.reports() == 2
    stored = rig.exchange.report("secom", PAIRING, "")
    assert stored.report_id == sha(stored.envelope.payload)
    assert stored.envelope.payload_type == REPORT_PAYLOAD_TYPE
    assert [s.keyid for s in stored.envelope.signatures] == [rig.keys.server.keyid]
    assert rig.keys.server.public.verify(
        stored.envelope.signatures[0].sig, pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)
    )
    pinned = {name: rig.keys.of(name).keyid for name in ("secom", "jprs")}
    verification = verify_report(stored.envelope, {SERVER: rig.keys.server.keyid, **pinned})
    assert {r: s.value for r, s in verification.roles.items()} == {
        "server": "valid",
        "root": "absent",
        "subordinate": "absent",
    }
    body = parse_report_body(stored.envelope.payload)
    assert (body.root.party, body.root.version, body.root.digest) == ("secom", 1, sha(secom))
    assert (body.subordinate.party, body.subordinate.digest) == ("jprs", sha(jprs))
    assert body.as_of == NOW
    missing = {f.sha256 for f in body.findings if f.code == "missing-at-subordinate"}
    assert missing == {r.sha256 for r in records[:2]}


def test_same_snapshot_twice_returns_the_identical_receipt_and_stores_one_row(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    env = sign_snapshot(payload(records), rig.keys.jprs)
    first = rig.push(env, "jprs")
    rig.clock.now = NOW + timedelta(minutes=1)  # a fresh receipt would carry another time
    again = rig.push(env, "jprs")
    assert again == first
    assert rig.snapshots() == 2
    assert rig.reports() == 2


def test_concurrent_identical_pushes_store_one_row(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    env = sign_snapshot(payload(records), rig.keys.jprs)
    start = threading.Barrier(8)

    def push_once() -> bytes:
        start.wait(timeout=10)
        return rig.push(env, "jprs")

    with ThreadPoolExecutor(8) as pool:
        receipts = [f.result(timeout=30) for f in [pool.submit(push_once) for _ in range(8)]]
    assert len(set(receipts)) == 1
    assert (rig.snapshots(), rig.reports()) == (2, 2)


def test_fetch_peer_snapshot_returns_the_exact_bytes(
    rig: Rig, records: list[CertRecord], secom_pushed: Envelope
) -> None:
    assert rig.exchange.fetch_peer_snapshot("jprs", PAIRING, 0) == (secom_pushed, b"")
    assert rig.exchange.fetch_peer_snapshot("jprs", PAIRING, 1) == (secom_pushed, b"")
    with pytest.raises(
        NotFound, match=re.escape("pairing 'secom-jprs': party 'jprs' has not pushed any snapshot")
    ):
        rig.exchange.fetch_peer_snapshot("secom", PAIRING, 0)
    with pytest.raises(
        NotFound, match=re.escape("pairing 'secom-jprs': party 'secom' has not pushed version 2")
    ):
        rig.exchange.fetch_peer_snapshot("jprs", PAIRING, 2)
    jprs = payload(records)
    rig.push(sign_snapshot(jprs, rig.keys.jprs), "jprs")
    fetched, _ = rig.exchange.fetch_peer_snapshot("secom", PAIRING, 0)
    assert fetched.payload == jprs
    assert fetched.signatures == sign_snapshot(jprs, rig.keys.jprs).signatures


@pytest.mark.parametrize(
    ("tls_party", "pairing"),
    [(None, PAIRING), ("mallory", PAIRING), ("jprs", "secom-acme")],
)
def test_fetch_refuses_a_non_member(
    rig: Rig, secom_pushed: Envelope, tls_party: str | None, pairing: str
) -> None:
    message = f"party {tls_party!r} is not a member of pairing {pairing!r}"
    for call in (
        lambda: rig.exchange.fetch_peer_snapshot(tls_party, pairing, 0),
        lambda: rig.exchange.report(tls_party, pairing, ""),
    ):
        refused(rig, call, AccessDenied, message, grpc.StatusCode.PERMISSION_DENIED)


def test_add_signature_refuses_a_key_not_pinned_for_the_party(rig: Rig, jprs_v1: bytes) -> None:
    stored = rig.exchange.report("jprs", PAIRING, "")
    message = pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)
    for key in (rig.keys.stranger, rig.keys.secom, rig.keys.server):
        sig = Sig(key.keyid, key.sign(message))
        refused(
            rig,
            partial(rig.exchange.add_signature, "jprs", PAIRING, stored.report_id, sig),
            BadReportSignature,
            f"report {stored.report_id}: signature by key {key.keyid[:16]} does not verify "
            "with a key in force for party 'jprs' in pairing 'secom-jprs'",
            grpc.StatusCode.PERMISSION_DENIED,
        )


def test_add_signature_refuses_a_signature_over_other_bytes(rig: Rig, jprs_v1: bytes) -> None:
    stored = rig.exchange.report("jprs", PAIRING, "")
    key = rig.keys.jprs
    for message in (
        stored.envelope.payload,  # the body without PAE
        pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload + b" "),
        pae(RECEIPT_PAYLOAD_TYPE, stored.envelope.payload),
    ):
        sig = Sig(key.keyid, key.sign(message))
        refused(
            rig,
            partial(rig.exchange.add_signature, "jprs", PAIRING, stored.report_id, sig),
            BadReportSignature,
            f"signature by key {key.keyid[:16]} does not verify with a key in force for party "
            "'jprs' in pairing 'secom-jprs'",
            grpc.StatusCode.PERMISSION_DENIED,
        )


def test_add_signature_refuses_a_non_member_and_an_unknown_report(rig: Rig, jprs_v1: bytes) -> None:
    stored = rig.exchange.report("jprs", PAIRING, "")
    key = rig.keys.jprs
    sig = Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)))
    refused(
        rig,
        lambda: rig.exchange.add_signature("mallory", PAIRING, stored.report_id, sig),
        AccessDenied,
        "party 'mallory' is not a member of pairing 'secom-jprs'",
        grpc.StatusCode.PERMISSION_DENIED,
    )
    refused(
        rig,
        lambda: rig.exchange.add_signature("jprs", PAIRING, "ab" * 32, sig),
        NotFound,
        f"pairing 'secom-jprs': no report {'ab' * 32}",
        grpc.StatusCode.NOT_FOUND,
    )


def test_add_signature_accepts_each_partys_real_signature(rig: Rig, jprs_v1: bytes) -> None:
    stored = rig.exchange.report("jprs", PAIRING, "")
    message = pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)
    for party in ("jprs", "secom"):
        key = rig.keys.of(party)
        after = rig.exchange.add_signature(
            party, PAIRING, stored.report_id, Sig(key.keyid, key.sign(message))
        )
    assert after.report_id == stored.report_id
    assert after.envelope.payload == stored.envelope.payload
    assert [s.keyid for s in after.envelope.signatures] == [
        rig.keys.server.keyid,
        rig.keys.jprs.keyid,
        rig.keys.secom.keyid,
    ]
    pinned = {name: rig.keys.of(name).keyid for name in ("secom", "jprs")}
    pinned[SERVER] = rig.keys.server.keyid
    result = verify_report(after.envelope, pinned)
    assert result.complete, result.describe()


def test_a_failing_reconciliation_does_not_undo_the_committed_snapshot(
    rig: Rig,
    records: list[CertRecord],
    secom_pushed: Envelope,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash(self: ReportMaker, pairing: str) -> str | None:
        raise RuntimeError("reconciler exploded")

    monkeypatch.setattr(ReportMaker, "_make", crash)
    data = payload(records)
    with caplog.at_level(logging.ERROR, logger="invsync.server"):
        receipt = rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    assert "reconciling pairing=secom-jprs failed" in caplog.text
    assert receipt_of(receipt)[1].version == 1
    assert (rig.snapshots(), rig.reports()) == (2, 1)  # only the one made before
    assert rig.store.last_accepted("jprs", PAIRING) == acc.LastAccepted(1, sha(data))
    assert rig.store.receipt("jprs", PAIRING, 1) == receipt


def test_a_report_decodes_no_snapshot_again(
    rig: Rig, records: list[CertRecord], jprs_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each report compares both parties' current and previous snapshots; all but the new one
    were decoded for the report before, and the new one comes decoded from its acceptance
    (issue 13: a steady cycle costs what changed). A restarted server decodes each once."""
    decoded: list[bytes] = []

    def counted(data: bytes, **wholes: Any) -> Snapshot:
        decoded.append(data)
        return decode_payload(data, **wholes)

    monkeypatch.setattr(reconciling, "decode_payload", counted)
    v2 = payload(records[1:], version=2, previous_digest=hashlib.sha256(jprs_v1).digest())
    rig.push(sign_snapshot(v2, rig.keys.jprs), "jprs")
    assert rig.reports() == 3
    assert decoded == []
    fresh = ReportMaker(
        server_name=rig.exchange.name,
        store=rig.store,
        policy=rig.exchange.policy,
        signing_key=rig.exchange.key,
        clock=lambda: NOW + timedelta(hours=1),
    )
    assert fresh.make(PAIRING) is not None
    assert sorted(decoded) == sorted([rig.store.snapshot("secom", PAIRING).payload, v2, jprs_v1])  # type: ignore[union-attr]


def test_a_report_built_while_a_key_rotation_committed_is_built_again(
    rig: Rig, jprs_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports are made off the push: a report must list the keys in force where it lands in
    the log, so one whose signers changed while it was built is not stored but built again."""
    maker = rig.exchange.reports
    real = ReportMaker.signers
    calls: list[int] = []

    def signers(self: ReportMaker, pairing: str, root: str, sub: str) -> list[Signer]:
        calls.append(len(calls))
        keys = real(self, pairing, root, sub)
        return keys[:-1] if len(calls) == 1 else keys  # as if jprs rotated right after

    monkeypatch.setattr(ReportMaker, "signers", signers)
    maker.clock = lambda: NOW + timedelta(hours=1)  # a new report, not the same one again
    rid = maker.make(PAIRING)
    assert rid is not None and len(calls) == 4  # built, found stale, built again, stored
    body = parse_report_body(rig.store.report(PAIRING, rid).envelope.payload)  # type: ignore[union-attr]
    assert list(body.signers) == real(maker, PAIRING, "secom", "jprs")


def test_a_pairing_is_stale_until_its_report_compares_its_latest_snapshots(
    rig: Rig, records: list[CertRecord], jprs_v1: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = rig.exchange.reports
    assert not maker.stale(PAIRING)  # the report on both v1s is in
    v2 = payload(records[1:], version=2, previous_digest=hashlib.sha256(jprs_v1).digest())
    with monkeypatch.context() as patched:
        patched.setattr(rig.exchange, "reconcile", lambda pairing: None)  # a stop cut it short
        rig.push(sign_snapshot(v2, rig.keys.jprs), "jprs")
    assert maker.stale(PAIRING)
    maker.make(PAIRING)
    assert not maker.stale(PAIRING)


def test_the_report_maker_keeps_no_whole_set_bytes(
    rig: Rig, records: list[CertRecord], jprs_v1: bytes
) -> None:
    """The snapshots kept decoded for the next report hold their records, not the whole set's
    bytes as well (60 MB each at 100,000 records)."""
    maker = rig.exchange.reports
    assert maker._decoded and all(s.full == b"" and s.records for s in maker._decoded.values())


def test_a_second_request_for_the_same_snapshots_makes_no_second_report(
    rig: Rig, jprs_v1: bytes
) -> None:
    """Two pushes close together ask for two reports, and the one made on the first request can
    already be on both new snapshots (seen in the pairing benchmark: both parties co-signed the
    first, then the server made another one, differing only in its clock, that one party signed
    alone). A later clock alone makes a push's request no report; the schedule still does."""
    rig.clock.now += timedelta(seconds=1)
    assert rig.exchange.reports.make_if_stale(PAIRING) is None
    assert rig.reports() == 2
    assert rig.exchange.reports.make(PAIRING) is not None  # the schedule's: a new clock
    assert rig.reports() == 3
