"""The exchange's transparency log in process (no gRPC): what each exchange appends, in which
order, and that the proofs and checkpoints the exchange serves verify with agent.exchange's
own verifiers and the pinned server key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

import grpc
import pytest

from invsync.agent.errors import StoreError
from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import tlog
from invsync.agent.exchange.checkpoint import BadCheckpoint, Checkpoint, open_checkpoint
from invsync.agent.exchange.envelope import Envelope, Sig, pae, sign
from invsync.agent.exchange.keys import SigningKey, VerifyKey, generate
from invsync.agent.exchange.logrange import BadLogRange, LogRange
from invsync.agent.exchange.receipt import (
    MalformedReceipt,
    Receipt,
    decode_receipt,
    logged_checkpoint,
    receipt_for,
)
from invsync.agent.exchange.rejections import (
    AccessDenied,
    BadLogRequest,
    EquivocationError,
    NotFound,
    Rejection,
    UntrustedSignerError,
    status_of,
)
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE
from invsync.server.exchange import MAX_LOG_ENTRIES, Exchange
from invsync.server.storage import LogWriter, canonical_envelope
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, Rig, payload

K = pb.LogEntryKind


@dataclass(frozen=True)
class Exchanged:
    """What the parties exchanged in `exchanged`, as each side got it back."""

    secom: Envelope
    jprs: Envelope
    receipts: dict[str, bytes]
    report_id: str


def pinned(keys: Keys) -> dict[str, VerifyKey]:
    return {SERVER: keys.server.public}


def cosign(rig: Rig, party: str, report_id: str) -> None:
    stored = rig.exchange.report(party, PAIRING, report_id)
    key = rig.keys.of(party)
    sig = Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, stored.envelope.payload)))
    rig.exchange.add_signature(party, PAIRING, report_id, sig)


@pytest.fixture
def exchanged(rig: Rig, records: list[CertRecord]) -> Exchanged:
    """secom pushes, jprs pushes, both co-sign the report on both snapshots."""
    secom = sign_snapshot(payload(records, "secom"), rig.keys.secom)
    receipts = {"secom": rig.push(secom, "secom")}
    jprs = sign_snapshot(payload(records), rig.keys.jprs)
    receipts["jprs"] = rig.push(jprs, "jprs")
    report_id = rig.exchange.report("jprs", PAIRING, "").report_id
    cosign(rig, "jprs", report_id)
    cosign(rig, "secom", report_id)
    return Exchanged(secom, jprs, receipts, report_id)


def entries(rig: Rig, party: str = "jprs") -> list[bytes]:
    size = rig.store.log_size()
    return list(rig.exchange.log_entries(party, 0, size).entries) if size else []


def parsed(leaf: bytes) -> pb.LogEntry:
    return pb.LogEntry.FromString(leaf)


def envelope_of(entry: pb.LogEntry) -> Envelope:
    return Envelope.from_json_dict(json.loads(entry.envelope))


def latest(rig: Rig) -> Checkpoint:
    return open_checkpoint(rig.exchange.checkpoint("secom", 0), SERVER, pinned(rig.keys))


def receipt_of(data: bytes) -> Receipt:
    return decode_receipt(Envelope.from_pb(pb.Envelope.FromString(data)))


def test_each_exchange_appends_its_entries_in_order(rig: Rig, exchanged: Exchanged) -> None:
    got = [parsed(leaf) for leaf in entries(rig)]
    assert [(e.kind, e.party, e.pairing, e.version, e.report_id) for e in got] == [
        (K.LOG_ENTRY_KIND_SNAPSHOT, "secom", PAIRING, 1, ""),
        (K.LOG_ENTRY_KIND_RECEIPT, "secom", PAIRING, 1, ""),
        (K.LOG_ENTRY_KIND_REPORT, "", PAIRING, 0, got[2].report_id),  # secom's alone
        (K.LOG_ENTRY_KIND_SNAPSHOT, "jprs", PAIRING, 1, ""),
        (K.LOG_ENTRY_KIND_RECEIPT, "jprs", PAIRING, 1, ""),
        (K.LOG_ENTRY_KIND_REPORT, "", PAIRING, 0, exchanged.report_id),
        (K.LOG_ENTRY_KIND_REPORT_SIGNATURE, "jprs", PAIRING, 0, exchanged.report_id),
        (K.LOG_ENTRY_KIND_REPORT_SIGNATURE, "secom", PAIRING, 0, exchanged.report_id),
    ]
    assert got[2].report_id != exchanged.report_id
    assert latest(rig).size == 8


def test_entries_hold_the_exchanged_envelopes_in_their_canonical_form(
    rig: Rig, exchanged: Exchanged
) -> None:
    got = [parsed(leaf) for leaf in entries(rig)]
    for entry in got:
        env = envelope_of(entry)
        assert entry.envelope == canonical_envelope(env)
        assert entry.envelope.startswith(b'{"payload":"')
        assert b" " not in entry.envelope and b"\n" not in entry.envelope
    assert envelope_of(got[0]) == exchanged.secom
    assert envelope_of(got[3]) == exchanged.jprs
    assert envelope_of(got[1]).to_pb().SerializeToString() == exchanged.receipts["secom"]
    assert envelope_of(got[4]).to_pb().SerializeToString() == exchanged.receipts["jprs"]
    body = rig.exchange.report("jprs", PAIRING, exchanged.report_id).envelope.payload
    server, jprs, secom = (envelope_of(e) for e in got[5:])
    assert {env.payload for env in (server, jprs, secom)} == {body}
    assert [s.keyid for s in server.signatures] == [rig.keys.server.keyid]
    assert [s.keyid for s in jprs.signatures] == [rig.keys.jprs.keyid]
    assert [s.keyid for s in secom.signatures] == [rig.keys.secom.keyid]
    assert rig.keys.jprs.public.verify(jprs.signatures[0].sig, pae(REPORT_PAYLOAD_TYPE, body))


def test_every_entry_is_included_in_the_latest_checkpoint(rig: Rig, exchanged: Exchanged) -> None:
    head = latest(rig)
    leaves = entries(rig)
    for index, leaf in enumerate(leaves):
        proof = rig.exchange.inclusion_proof("secom", index, head.size)
        tlog.verify_inclusion(tlog.leaf_hash(leaf), index, head.size, proof, head.root)
    with pytest.raises(tlog.ProofError, match="entry 0 is not in the tree of size 8"):
        proof = rig.exchange.inclusion_proof("secom", 0, head.size)
        tlog.verify_inclusion(tlog.leaf_hash(leaves[1]), 0, head.size, proof, head.root)


def test_the_checkpoints_of_every_size_are_consistent(rig: Rig, exchanged: Exchanged) -> None:
    size = rig.store.log_size()
    heads = [
        open_checkpoint(rig.exchange.checkpoint("jprs", n), SERVER, pinned(rig.keys))
        for n in range(1, size + 1)
    ]
    assert [head.size for head in heads] == list(range(1, size + 1))
    for first in heads:
        for second in heads[first.size - 1 :]:
            proof = rig.exchange.consistency_proof("jprs", first.size, second.size)
            tlog.verify_consistency(first.size, second.size, first.root, second.root, proof)
    assert heads[-1].root == tlog.root([tlog.leaf_hash(leaf) for leaf in entries(rig)])


def test_a_receipt_points_at_its_snapshot_entry_in_a_checkpoint_that_includes_it(
    rig: Rig, exchanged: Exchanged
) -> None:
    leaves = entries(rig)
    for party, index in (("secom", 0), ("jprs", 3)):
        receipt = receipt_of(exchanged.receipts[party])
        assert receipt.log_index == index
        head = logged_checkpoint(receipt, pinned(rig.keys))
        assert head.size == index + 1  # signed as the snapshot's entry went in
        entry = parsed(leaves[index])
        assert (entry.kind, entry.party, entry.version) == (K.LOG_ENTRY_KIND_SNAPSHOT, party, 1)
        proof = rig.exchange.inclusion_proof(party, index, head.size)
        tlog.verify_inclusion(tlog.leaf_hash(leaves[index]), index, head.size, proof, head.root)


def test_a_receipts_checkpoint_must_verify_with_the_pinned_key_and_include_its_index(
    rig: Rig, exchanged: Exchanged
) -> None:
    receipt = receipt_of(exchanged.receipts["jprs"])
    with pytest.raises(BadCheckpoint, match="no signature by a pinned key verifies"):
        logged_checkpoint(receipt, {SERVER: rig.keys.stranger.public})
    outside = receipt_for(
        party="jprs",
        pairing=PAIRING,
        version=1,
        payload=exchanged.jprs.payload,
        accepted_at=NOW,
        server=SERVER,
        log_index=4,
        checkpoint=receipt.checkpoint,
    )
    with pytest.raises(
        MalformedReceipt,
        match=re.escape("log entry 4 is not in its checkpoint's tree of size 4"),
    ):
        logged_checkpoint(outside, pinned(rig.keys))


def test_the_checkpoint_is_a_signed_note_of_three_body_lines(
    rig: Rig, exchanged: Exchanged
) -> None:
    note = rig.exchange.checkpoint("jprs", 0)
    body, blank, signature = note.decode().partition("\n\n")
    head = latest(rig)
    root = tlog.root([tlog.leaf_hash(leaf) for leaf in entries(rig)])
    assert blank and body.split("\n") == [SERVER, "8", head.body().decode().split("\n")[2]]
    assert head.root == root
    assert re.fullmatch(f"\u2014 {SERVER} [A-Za-z0-9+/]+=*\n", signature)


def test_a_refused_or_repeated_push_appends_nothing(
    rig: Rig, records: list[CertRecord], exchanged: Exchanged
) -> None:
    before, head = entries(rig), rig.exchange.checkpoint("jprs", 0)
    strange = sign_snapshot(payload(records, version=2), rig.keys.stranger)
    with pytest.raises(UntrustedSignerError):
        rig.push(strange, "jprs")
    other = payload(records, expires_at=NOW + timedelta(days=2))  # version 1 with other bytes
    with pytest.raises(EquivocationError):
        rig.push(sign_snapshot(other, rig.keys.jprs), "jprs")
    assert rig.push(exchanged.jprs, "jprs") == exchanged.receipts["jprs"]
    cosign(rig, "jprs", exchanged.report_id)  # Ed25519 is deterministic: the same bytes again
    assert entries(rig) == before
    assert rig.exchange.checkpoint("jprs", 0) == head


def test_a_new_signature_by_the_same_key_is_logged_again(rig: Rig, exchanged: Exchanged) -> None:
    size = rig.store.log_size()
    cosign(rig, "secom", exchanged.report_id)  # secom's key is ECDSA: new signature bytes
    last = parsed(entries(rig)[-1])
    assert rig.store.log_size() == size + 1
    assert (last.kind, last.party) == (K.LOG_ENTRY_KIND_REPORT_SIGNATURE, "secom")


def test_a_key_announcement_is_logged_after_its_snapshot_and_receipt(
    rig: Rig, records: list[CertRecord], exchanged: Exchanged
) -> None:
    new: SigningKey = generate()
    previous = hashlib.sha256(exchanged.jprs.payload).digest()
    data = payload(
        records, version=2, previous_digest=previous, next_signing_key=new.public.spki_der
    )
    env = sign(SNAPSHOT_PAYLOAD_TYPE, data, [rig.keys.jprs, new])
    size = rig.store.log_size()
    receipt = receipt_of(rig.push(env, "jprs"))
    added = [parsed(leaf) for leaf in entries(rig)[size : size + 3]]
    assert [(e.kind, e.party, e.version) for e in added] == [
        (K.LOG_ENTRY_KIND_SNAPSHOT, "jprs", 2),
        (K.LOG_ENTRY_KIND_RECEIPT, "jprs", 2),
        (K.LOG_ENTRY_KIND_KEY_ANNOUNCEMENT, "jprs", 2),
    ]
    assert receipt.log_index == size
    assert added[2].announced_key == new.public.spki_der
    assert envelope_of(added[2]) == env
    assert [e.announced_key for e in added[:2]] == [b"", b""]


def test_entries_are_byte_identical_across_fetches_and_both_parties_read_them(
    rig: Rig, exchanged: Exchanged
) -> None:
    assert entries(rig, "jprs") == entries(rig, "secom") == entries(rig, "jprs")
    answer = rig.exchange.log_entries("secom", 2, 5)
    assert list(answer.entries) == entries(rig)[2:5]
    assert list(answer.leaf_hashes) == [tlog.leaf_hash(leaf) for leaf in entries(rig)[2:5]]
    answer.check()


def _second_pairing(rig: Rig) -> None:
    """secom is also the root of `secom-stranger`, whose subordinate is a third party."""
    parties = dict(rig.exchange.policy.parties)
    key = rig.keys.stranger.public
    parties["stranger"] = acc.PartyPolicy("stranger", {key.keyid: key})
    pairings = dict(rig.exchange.policy.pairings)
    pairings[OTHER] = acc.PairingPolicy(OTHER, root="secom", subordinate="stranger")
    policy = replace(rig.exchange.policy, parties=parties, pairings=pairings)
    rig.exchange.policy = rig.exchange.reports.policy = policy


OTHER = "secom-stranger"


def test_another_pairings_entries_are_withheld_but_their_leaf_hashes_served(
    rig: Rig, records: list[CertRecord], exchanged: Exchanged
) -> None:
    _second_pairing(rig)
    data = payload(records, "stranger", pairing=OTHER, role=SUBORDINATE)
    rig.push(sign_snapshot(data, rig.keys.stranger), "stranger")
    size = rig.store.log_size()
    stored = rig.store.log_entries(0, size, 1 << 30)
    seen = {party: rig.exchange.log_entries(party, 0, size) for party in ("jprs", "stranger")}
    by_secom = rig.exchange.log_entries("secom", 0, size)
    assert list(by_secom.entries) == stored  # a member of both pairings reads everything
    assert [bool(e) for e in seen["jprs"].entries] == [True] * 8 + [False] * 3
    assert [bool(e) for e in seen["stranger"].entries] == [False] * 8 + [True] * 3
    assert {parsed(e).pairing for e in seen["stranger"].entries if e} == {OTHER}
    for answer in (*seen.values(), by_secom):
        assert list(answer.leaf_hashes) == rig.store.leaf_hashes(size)
        answer.check()
    assert LogRange.from_pb(0, seen["jprs"].to_pb()) == seen["jprs"]


def test_a_served_entry_that_does_not_match_its_leaf_hash_is_refused(
    rig: Rig, exchanged: Exchanged
) -> None:
    answer = rig.exchange.log_entries("jprs", 0, 3)
    forged = replace(answer, entries=(answer.entries[1], *answer.entries[1:]))
    with pytest.raises(BadLogRange, match=re.escape("log entry 0: its bytes do not hash to")):
        forged.check()
    with pytest.raises(BadLogRange, match=re.escape("log entries from 0: 2 entries but 3 leaf")):
        replace(answer, entries=answer.entries[:2]).check()


@pytest.mark.parametrize("caller", [None, "mallory"])
def test_a_caller_outside_the_federation_reads_nothing(
    rig: Rig, exchanged: Exchanged, caller: str | None
) -> None:
    message = f"party {caller!r} is not a member of the federation"
    for call in (
        lambda: rig.exchange.checkpoint(caller, 0),
        lambda: rig.exchange.log_entries(caller, 0, 1),
        lambda: rig.exchange.inclusion_proof(caller, 0, 1),
        lambda: rig.exchange.consistency_proof(caller, 1, 2),
    ):
        with pytest.raises(AccessDenied, match=re.escape(message)) as caught:
            call()
        assert status_of(caught.value) == grpc.StatusCode.PERMISSION_DENIED


def test_a_range_over_the_cap_is_refused(rig: Rig, exchanged: Exchanged) -> None:
    with pytest.raises(Rejection, match=re.escape("at most 256 per request")) as caught:
        rig.exchange.log_entries("jprs", 0, MAX_LOG_ENTRIES + 1)
    assert str(caught.value) == "log entries 0..257: 257 asked for, at most 256 per request"
    assert status_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(caught.value, BadLogRequest) and caught.value.rule == "log-range"


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda x: x.log_entries("jprs", 3, 3), BadLogRequest, "log entries 3..3: the end"),
        (lambda x: x.log_entries("jprs", 5, 9), NotFound, "the log has 8 entries, not 9"),
        (lambda x: x.checkpoint("jprs", 9), NotFound, "the log has no checkpoint of size 9"),
        (lambda x: x.inclusion_proof("jprs", 8, 8), BadLogRequest, "entry 8 is not in a tree"),
        (lambda x: x.inclusion_proof("jprs", 0, 9), NotFound, "the log has 8 entries, not 9"),
        (lambda x: x.consistency_proof("jprs", 0, 8), BadLogRequest, "sizes must be 0 < first"),
        (lambda x: x.consistency_proof("jprs", 5, 4), BadLogRequest, "sizes must be 0 < first"),
        (lambda x: x.consistency_proof("jprs", 1, 9), NotFound, "the log has 8 entries, not 9"),
    ],
)
def test_what_the_log_does_not_have_is_refused(
    rig: Rig,
    exchanged: Exchanged,
    call: Callable[[Exchange], object],
    kind: type[Exception],
    message: str,
) -> None:
    with pytest.raises(kind, match=re.escape(message)):
        call(rig.exchange)


def test_an_empty_log_has_no_checkpoint(rig: Rig) -> None:
    with pytest.raises(NotFound, match=re.escape("the log has no checkpoint yet (it has 0")):
        rig.exchange.checkpoint("jprs", 0)


def test_a_failing_log_append_commits_neither_the_snapshot_nor_any_entry(
    rig: Rig, records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: LogWriter, size: int, leaves: Sequence[bytes]) -> bytes:
        raise StoreError("checkpoint signing failed")

    monkeypatch.setattr(LogWriter, "sign", broken)
    env = sign_snapshot(payload(records), rig.keys.jprs)
    with pytest.raises(StoreError, match="checkpoint signing failed"):
        rig.push(env, "jprs")
    assert (rig.snapshots(), rig.store.log_size(), rig.store.checkpoint()) == (0, 0, None)
    monkeypatch.undo()
    assert receipt_of(rig.push(env, "jprs")).log_index == 0  # the same push now goes through


def test_a_report_whose_entry_fails_is_not_stored(
    rig: Rig, records: list[CertRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.push(sign_snapshot(payload(records), rig.keys.jprs), "jprs")
    assert (rig.reports(), rig.store.log_size()) == (1, 3)
    real = ServerStore.append_log_entry

    def refuse_reports(self: ServerStore, leaf: bytes) -> int:
        if pb.LogEntry.FromString(leaf).kind == K.LOG_ENTRY_KIND_REPORT:
            raise StoreError("disk full")
        return real(self, leaf)

    monkeypatch.setattr(ServerStore, "append_log_entry", refuse_reports)
    rig.push(sign_snapshot(payload(records, "secom"), rig.keys.secom), "secom")
    assert (rig.snapshots(), rig.reports(), rig.store.log_size()) == (2, 1, 5)
