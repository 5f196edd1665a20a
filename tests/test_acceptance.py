"""Snapshot acceptance: one test per rule of DESIGN §5, each pinning the error class and message."""

from __future__ import annotations

import gc
import hashlib
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import envelope, keys, merkle, snapshot
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.merkle import records_digest
from invsync.agent.exchange.object_marks import ObjectMarks
from invsync.agent.exchange.recent_snapshots import RecentSnapshots
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import Snapshot
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import edited

NOW = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)
PAIRING = "secom-jprs"


@pytest.fixture(scope="module")
def secom_key() -> keys.SigningKey:
    return keys.generate("ecdsa-p256")


@pytest.fixture(scope="module")
def jprs_key() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture(scope="module")
def stranger_key() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture(scope="module")
def policy(secom_key: keys.SigningKey, jprs_key: keys.SigningKey) -> acc.AcceptancePolicy:
    return acc.AcceptancePolicy(
        parties={
            "secom": acc.PartyPolicy("secom", {secom_key.keyid: secom_key.public}),
            "jprs": acc.PartyPolicy("jprs", {jprs_key.keyid: jprs_key.public}),
        },
        pairings={
            PAIRING: acc.PairingPolicy(PAIRING, root="secom", subordinate="jprs"),
            "secom-acme": acc.PairingPolicy("secom-acme", root="secom", subordinate="acme"),
        },
    )


@pytest.fixture(scope="module")
def v1(jprs_records: tuple[CertRecord, ...]) -> bytes:
    return payload(list(jprs_records), version=1, previous_digest=b"")


@pytest.fixture(scope="module")
def last(v1: bytes) -> acc.LastAccepted:
    return acc.LastAccepted(1, hashlib.sha256(v1).hexdigest())


def payload(records: list[CertRecord], **changes: object) -> bytes:
    fields: dict[str, object] = {
        "party": "jprs",
        "pairing": PAIRING,
        "role": "subordinate",
        "version": 2,
        "issued_at": NOW - timedelta(hours=1),
        "expires_at": NOW + timedelta(days=7),
        "records": records,
    }
    fields.update(changes)
    return snapshot.build_payload(**fields)  # type: ignore[arg-type]


@pytest.fixture
def push(
    policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey, last: acc.LastAccepted, v1: bytes
) -> Callable[..., acc.Accepted]:
    """Sign `data` (jprs's key unless told) and run accept() as jprs, after v1, at NOW."""

    def run(
        data: bytes,
        *,
        key: keys.SigningKey | None = None,
        tls_party: str | None = "jprs",
        previous: acc.LastAccepted | None = last,
        now: datetime = NOW,
    ) -> acc.Accepted:
        env = snapshot.sign_snapshot(data, key or jprs_key)
        return acc.accept(env, tls_party=tls_party, policy=policy, last=previous, now=now)

    return run


def v2(records: list[CertRecord], last: acc.LastAccepted, **changes: object) -> bytes:
    """The next snapshot after v1, chained to it."""
    fields: dict[str, object] = {"previous_digest": bytes.fromhex(last.payload_sha256)}
    fields.update(changes)
    return payload(records, **fields)


def rejected(kind: type[Exception], message: str) -> pytest.RaisesExc[Exception]:
    return pytest.raises(kind, match=re.escape(message))


# Accepted


def test_first_snapshot_accepted(push: Callable[..., acc.Accepted], v1: bytes) -> None:
    accepted = push(v1, previous=None)
    assert not accepted.duplicate
    assert accepted.snapshot.header.version == 1
    assert accepted.snapshot.payload_sha256 == hashlib.sha256(v1).hexdigest()


def test_next_snapshot_accepted(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    accepted = push(v2(records, last))
    assert not accepted.duplicate
    assert len(accepted.snapshot.records) == 16


def test_last_can_be_a_lookup(
    policy: acc.AcceptancePolicy,
    jprs_key: keys.SigningKey,
    records: list[CertRecord],
    last: acc.LastAccepted,
) -> None:
    asked: list[tuple[str, str]] = []

    def lookup(party: str, pairing: str) -> acc.LastAccepted:
        asked.append((party, pairing))
        return last

    env = snapshot.sign_snapshot(v2(records, last), jprs_key)
    acc.accept(env, tls_party="jprs", policy=policy, last=lookup, now=NOW)
    assert asked == [("jprs", PAIRING)]


# 1. identity


def test_unknown_tls_identity(push: Callable[..., acc.Accepted], v1: bytes) -> None:
    with rejected(rej.UnknownPartyError, "TLS identity 'mallory' is not an allowed party"):
        push(v1, tls_party="mallory")


def test_no_tls_identity(push: Callable[..., acc.Accepted], v1: bytes) -> None:
    with rejected(rej.UnknownPartyError, "the TLS peer presented no party identity"):
        push(v1, tls_party=None)


# 2. signature


def test_tampered_payload(
    policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey, v1: bytes
) -> None:
    env = snapshot.sign_snapshot(v1, jprs_key)
    flipped = v1[:40] + bytes([v1[40] ^ 1]) + v1[41:]
    tampered = Envelope(env.payload_type, flipped, env.signatures)
    message = f"signature by key {jprs_key.keyid} pinned for party 'jprs' does not verify"
    with rejected(rej.BadSignatureError, message):
        acc.accept(tampered, tls_party="jprs", policy=policy, last=None, now=NOW)


def test_bytes_appended_after_signed_payload(
    policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey, v1: bytes
) -> None:
    env = snapshot.sign_snapshot(v1, jprs_key)
    # A well-formed extra field: protobuf would parse it happily, the signature must not.
    extra = pb.SnapshotPayload(records=[pb.Record(operator="x")]).SerializeToString()
    appended = Envelope(env.payload_type, v1 + extra, env.signatures)
    pb.SnapshotPayload.FromString(appended.payload)  # still parses
    with rejected(rej.BadSignatureError, "pinned for party 'jprs' does not verify"):
        acc.accept(appended, tls_party="jprs", policy=policy, last=None, now=NOW)


def test_unknown_key(
    push: Callable[..., acc.Accepted], v1: bytes, stranger_key: keys.SigningKey
) -> None:
    message = f"no signature by a key pinned for party 'jprs' (signed by: {stranger_key.keyid})"
    with rejected(rej.UntrustedSignerError, message):
        push(v1, key=stranger_key, previous=None)


def test_key_of_another_party(
    policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey, records: list[CertRecord]
) -> None:
    data = payload(records, party="secom", role="root", version=1)
    env = snapshot.sign_snapshot(data, jprs_key)
    with rejected(
        rej.UntrustedSignerError, "signed by a key pinned for party 'jprs', not for 'secom'"
    ):
        acc.accept(env, tls_party="secom", policy=policy, last=None, now=NOW)


def test_signature_checked_before_parsing(
    push: Callable[..., acc.Accepted], stranger_key: keys.SigningKey
) -> None:
    # Garbage signed by a stranger is refused for its signer, never handed to the parser.
    with rejected(rej.UntrustedSignerError, "no signature by a key pinned for party 'jprs'"):
        push(b"\xff\xff not protobuf", key=stranger_key)


# 3. decoding, party, pairing, role


def test_malformed_der_in_a_record(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    def corrupt(msg: pb.SnapshotPayload) -> None:
        msg.records[5].certificate_der = b"not a certificate"

    with rejected(rej.MalformedSnapshot, "record 5: certificate DER does not parse"):
        push(edited(v2(records, last), corrupt))


def test_wrong_payload_type(
    policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey, v1: bytes
) -> None:
    env = envelope.sign("application/vnd.invsync.receipt.v1+protobuf", v1, [jprs_key])
    with rejected(rej.MalformedSnapshot, "payload type 'application/vnd.invsync.receipt"):
        acc.accept(env, tls_party="jprs", policy=policy, last=None, now=NOW)


def test_wrong_party(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(records, last, party="secom", role="root")
    with rejected(
        rej.PartyMismatchError, "header names party 'secom' but the TLS identity is 'jprs'"
    ):
        push(data)


def test_unknown_pairing(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    with rejected(rej.PairingMismatchError, "unknown pairing 'secom-jprs-2'"):
        push(v2(records, last, pairing="secom-jprs-2"))


def test_not_a_member_of_pairing(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    message = (
        "party 'jprs' is not a member of pairing 'secom-acme' (root 'secom', subordinate 'acme')"
    )
    with rejected(rej.PairingMismatchError, message):
        push(v2(records, last, pairing="secom-acme"))


def test_wrong_role(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    message = "header role 'root' but party 'jprs' is the subordinate of pairing 'secom-jprs'"
    with rejected(rej.PairingMismatchError, message):
        push(v2(records, last, role="root"))


# 4. version, equivocation, chain


def test_lower_version(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(records, last, version=3)
    newer = acc.LastAccepted(5, last.payload_sha256)
    message = "version 3 is below the last accepted version 5 of party 'jprs' in pairing"
    with rejected(rej.RollbackError, message):
        push(data, previous=newer)


def test_equal_version_identical_bytes_is_a_no_op(
    push: Callable[..., acc.Accepted], v1: bytes, last: acc.LastAccepted
) -> None:
    # Even a day after expiry: the server already holds these bytes and their receipt.
    accepted = push(v1, previous=last, now=NOW + timedelta(days=30))
    assert accepted.duplicate
    assert accepted.snapshot.payload_sha256 == last.payload_sha256


def test_equal_version_other_bytes(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    other = payload(records[:-1], version=1)
    message = (
        f"version 1 was already accepted with digest {last.payload_sha256}; "
        f"this one is {hashlib.sha256(other).hexdigest()}"
    )
    with rejected(rej.EquivocationError, message):
        push(other)


def test_broken_chain(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = payload(records, previous_digest=b"\x22" * 32)
    message = f"previous_digest {'22' * 32} is not the last accepted digest {last.payload_sha256}"
    with rejected(rej.ChainError, message):
        push(data)


def test_first_snapshot_must_not_claim_a_previous(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    data = payload(records, version=1, previous_digest=b"\x22" * 32)
    with rejected(rej.ChainError, "is not the last accepted digest (empty: no snapshot accepted"):
        push(data, previous=None)


# 5. times


def test_expired(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(records, last, expires_at=NOW)
    with rejected(rej.ExpiredError, "expired at 2021-03-01T12:00:00Z (now 2021-03-01T12:00:00Z)"):
        push(data)


def test_issued_in_the_future(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(records, last, issued_at=NOW + timedelta(minutes=6))
    message = "issued_at 2021-03-01T12:06:00Z is more than 0:05:00 after now (2021-03-01T12:00:00Z)"
    with rejected(rej.FutureIssuedError, message):
        push(data)


def test_issued_within_clock_skew(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    assert not push(v2(records, last, issued_at=NOW + timedelta(minutes=5))).duplicate


def test_expires_before_issued(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(
        records,
        last,
        issued_at=NOW + timedelta(minutes=2),
        expires_at=NOW + timedelta(minutes=1),
    )
    message = "expires_at 2021-03-01T12:01:00Z is not after issued_at 2021-03-01T12:02:00Z"
    with rejected(rej.BadValidityError, message):
        push(data)


def test_validity_too_long(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    data = v2(records, last, expires_at=NOW + timedelta(days=31))
    with rejected(rej.BadValidityError, "validity 31 days, 1:00:00 exceeds the maximum 31 days"):
        push(data)


# 6. records


def test_wrong_count(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    def miscount(msg: pb.SnapshotPayload) -> None:
        msg.header.record_count = 17

    with rejected(rej.CountMismatchError, "header says 17 records, the payload holds 16"):
        push(edited(v2(records, last), miscount))


def test_wrong_digest(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    def redigest(msg: pb.SnapshotPayload) -> None:
        msg.header.records_digest = records_digest(r.sha256 for r in records[1:])

    with rejected(rej.DigestMismatchError, "is not the Merkle root"):
        push(edited(v2(records, last), redigest))


def test_record_dropped_without_recount_is_caught(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    def drop(msg: pb.SnapshotPayload) -> None:
        del msg.records[0]
        msg.header.record_count = 15

    with rejected(rej.DigestMismatchError, "is not the Merkle root"):
        push(edited(v2(records, last), drop))


def test_duplicate_record(
    push: Callable[..., acc.Accepted], records: list[CertRecord], last: acc.LastAccepted
) -> None:
    # build_payload refuses duplicates, so hand-build one with a consistent count and digest.
    ordered = sorted(records[:3], key=lambda r: r.sha256)
    twice = [*ordered, ordered[1]]

    def duplicate(msg: pb.SnapshotPayload) -> None:
        msg.records.append(pb.Record(certificate_der=ordered[1].info.der))
        msg.header.record_count = len(twice)
        msg.header.records_digest = records_digest(r.sha256 for r in twice)

    message = f"record 3 ({ordered[1].sha256}) repeats record 1"
    with rejected(rej.DuplicateRecordError, message):
        push(edited(v2(ordered, last), duplicate))


# verify_peer_snapshot: an agent checking its peer's snapshot fetched from the server


@pytest.fixture(scope="module")
def jprs_policy(policy: acc.AcceptancePolicy) -> acc.PartyPolicy:
    return policy.parties["jprs"]


@pytest.fixture(scope="module")
def pairing_policy(policy: acc.AcceptancePolicy) -> acc.PairingPolicy:
    return policy.pairings[PAIRING]


def test_peer_snapshot_verified(
    jprs_key: keys.SigningKey,
    jprs_policy: acc.PartyPolicy,
    pairing_policy: acc.PairingPolicy,
    v1: bytes,
) -> None:
    env = snapshot.sign_snapshot(v1, jprs_key)
    for pairing in (pairing_policy, PAIRING):
        peer = acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=pairing, now=NOW)
        assert peer.header.party == "jprs"


def test_peer_snapshot_signed_by_someone_else(
    secom_key: keys.SigningKey, jprs_policy: acc.PartyPolicy, v1: bytes
) -> None:
    env = snapshot.sign_snapshot(v1, secom_key)
    with rejected(rej.UntrustedSignerError, "no signature by a key pinned for party 'jprs'"):
        acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)


def test_peer_snapshot_tampered(
    jprs_key: keys.SigningKey, jprs_policy: acc.PartyPolicy, v1: bytes
) -> None:
    env = snapshot.sign_snapshot(v1, jprs_key)
    tampered = Envelope(env.payload_type, v1 + b"\x00", env.signatures)
    with rejected(rej.BadSignatureError, "pinned for party 'jprs' does not verify"):
        acc.verify_peer_snapshot(tampered, peer=jprs_policy, pairing=PAIRING, now=NOW)


def test_peer_snapshot_of_another_party(
    jprs_key: keys.SigningKey, records: list[CertRecord]
) -> None:
    env = snapshot.sign_snapshot(payload(records, party="secom", role="root"), jprs_key)
    peer = acc.PartyPolicy("jprs", {jprs_key.keyid: jprs_key.public})
    with rejected(rej.PartyMismatchError, "peer snapshot names party 'secom', not 'jprs'"):
        acc.verify_peer_snapshot(env, peer=peer, pairing=PAIRING, now=NOW)


def test_peer_snapshot_of_another_pairing(
    jprs_key: keys.SigningKey, jprs_policy: acc.PartyPolicy, records: list[CertRecord]
) -> None:
    env = snapshot.sign_snapshot(payload(records, pairing="other"), jprs_key)
    with rejected(
        rej.PairingMismatchError, "peer snapshot is for pairing 'other', not 'secom-jprs'"
    ):
        acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)


def test_peer_snapshot_wrong_role(
    jprs_key: keys.SigningKey,
    jprs_policy: acc.PartyPolicy,
    pairing_policy: acc.PairingPolicy,
    records: list[CertRecord],
) -> None:
    env = snapshot.sign_snapshot(payload(records, role="root"), jprs_key)
    with rejected(rej.PairingMismatchError, "header role 'root' but party 'jprs' is the sub"):
        acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=pairing_policy, now=NOW)


def test_peer_snapshot_expired(
    jprs_key: keys.SigningKey, jprs_policy: acc.PartyPolicy, v1: bytes
) -> None:
    env = snapshot.sign_snapshot(v1, jprs_key)
    later = NOW + timedelta(days=8)
    with rejected(rej.ExpiredError, "expired at 2021-03-08T12:00:00Z"):
        acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=later)


def test_peer_snapshot_wrong_count(
    jprs_key: keys.SigningKey, jprs_policy: acc.PartyPolicy, v1: bytes
) -> None:
    def miscount(msg: pb.SnapshotPayload) -> None:
        msg.header.record_count = 3

    env = snapshot.sign_snapshot(edited(v1, miscount), jprs_key)
    with rejected(rej.CountMismatchError, "header says 3 records, the payload holds 16"):
        acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)


def _doubled(decoded: Snapshot) -> Snapshot:
    """`decoded` with its first record twice, under a header whose count and digest agree."""
    records = (*decoded.records, decoded.records[0])
    header = replace(
        decoded.header,
        record_count=len(records),
        records_digest=records_digest(r.sha256 for r in records),
    )
    identities = (*decoded.identities, decoded.identities[0])
    return replace(decoded, header=header, records=records, identities=identities)


@pytest.mark.parametrize("identities", ["the decoder's", "none"])
@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("as decoded", None, ""),
        ("a record twice", rej.DuplicateRecordError, r"record \d+ \(\w+\) repeats record 0"),
        ("another digest", rej.DigestMismatchError, "is not the Merkle root"),
    ],
)
def test_the_record_checks_answer_alike_with_the_decoders_identities_or_without(
    records: list[CertRecord],
    identities: str,
    case: str,
    error: type[Exception] | None,
    message: str,
) -> None:
    """A decoded snapshot brings each record's identity; one made otherwise is read record by
    record. Both give the same answer."""
    decoded = snapshot.decode_payload(payload(records))
    assert len(decoded.identities) == len(records)
    checked = {
        "as decoded": decoded,
        "a record twice": _doubled(decoded),
        "another digest": replace(
            decoded, header=replace(decoded.header, records_digest=b"\x00" * 32)
        ),
    }[case]
    if identities == "none":
        checked = replace(checked, identities=())
    if error is None:
        acc._check_records(checked)
        return
    with pytest.raises(error, match=message):
        acc._check_records(checked)


def test_a_snapshot_object_s_records_are_checked_once(
    jprs_key: keys.SigningKey,
    jprs_policy: acc.PartyPolicy,
    v1: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A daemon verifies the peer's previous snapshot as the object it verified as current the
    cycle before (agent.exchange.recent_snapshots): its records_digest is not worked out
    again. An equal snapshot decoded anew is checked again."""
    roots: list[int] = []
    real = merkle.merkle_root

    def counted(leaves: list[bytes]) -> bytes:
        roots.append(len(leaves))
        return real(leaves)

    monkeypatch.setattr(acc, "merkle_root", counted)
    env = snapshot.sign_snapshot(v1, jprs_key)
    cache = RecentSnapshots.install()
    try:
        first = acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)
        again = acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)
    finally:
        cache.uninstall()
    assert again is first and len(roots) == 1
    anew = acc.verify_peer_snapshot(env, peer=jprs_policy, pairing=PAIRING, now=NOW)
    assert anew is not first and anew == first and len(roots) == 2


def test_object_marks_hold_only_the_marked_object_while_it_lives() -> None:
    class Thing:
        pass

    marks: ObjectMarks[Thing] = ObjectMarks()
    marked, other = Thing(), Thing()
    marks.add(marked)
    assert marks.holds(marked) and not marks.holds(other) and len(marks) == 1
    del marked
    gc.collect()
    assert len(marks) == 0
