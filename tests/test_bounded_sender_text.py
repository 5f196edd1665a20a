"""Issue 12: text a sender chose is quoted bounded in every exchange message.

Each field below is 100,000 characters (or bytes) long. The message must stay small as built
(`args[0]`, not only after `Rejection.__str__` caps it), must still name the field, and must
keep what follows the quoted value, so that one huge field cannot push the rest of the message
out. The values themselves are decoded whole: only messages are bounded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.errors import SignatureError
from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import envelope, keys, snapshot
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.checkpoint import (
    BadCheckpoint,
    Checkpoint,
    open_checkpoint,
    open_pinned,
    sign_checkpoint,
)
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.receipt import (
    MalformedReceipt,
    Receipt,
    decode_receipt,
    logged_checkpoint,
)
from invsync.agent.model.record import CertRecord
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import edited
from tests.exchange_rig import payload as rig_payload

NOW = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)
PAIRING = "secom-jprs"
HUGE = 100_000
# What a message may reach: a few quoted fields of 200 characters and the text around them.
MOST = 1_200


@pytest.fixture(scope="module")
def jprs_key() -> keys.SigningKey:
    return keys.generate()


@pytest.fixture(scope="module")
def policy(jprs_key: keys.SigningKey) -> acc.AcceptancePolicy:
    secom_key = keys.generate()
    return acc.AcceptancePolicy(
        parties={
            "secom": acc.PartyPolicy("secom", {secom_key.keyid: secom_key.public}),
            "jprs": acc.PartyPolicy("jprs", {jprs_key.keyid: jprs_key.public}),
        },
        pairings={PAIRING: acc.PairingPolicy(PAIRING, root="secom", subordinate="jprs")},
    )


def payload(records: list[CertRecord], **changes: object) -> bytes:
    """jprs's snapshot (tests/exchange_rig.py), in jprs's role whatever party it names."""
    changes.setdefault("role", "subordinate")
    party = str(changes.pop("party", "jprs"))
    return rig_payload(records, party, **changes)


@pytest.fixture
def push(policy: acc.AcceptancePolicy, jprs_key: keys.SigningKey) -> Callable[..., acc.Accepted]:
    """Run accept() on `env` (or on `data` signed by jprs) as jprs, with nothing accepted yet."""

    def run(
        data: bytes = b"", *, env: Envelope | None = None, tls_party: str = "jprs"
    ) -> acc.Accepted:
        env = env or snapshot.sign_snapshot(data, jprs_key)
        return acc.accept(env, tls_party=tls_party, policy=policy, last=None, now=NOW)

    return run


def bounded_message(error: BaseException, *parts: str) -> str:
    """The error's message, checked to be small as built and shown, and to hold every part."""
    built, shown = str(error.args[0]), str(error)
    assert len(built) < MOST, len(built)
    assert len(shown) < MOST, len(shown)
    assert "\n" not in shown
    for part in parts:
        assert part in shown, (part, shown[:300])
    return shown


# The acceptance path: accept()


def test_a_huge_header_party(push: Callable[..., acc.Accepted], records: list[CertRecord]) -> None:
    with pytest.raises(rej.PartyMismatchError) as caught:
        push(payload(records, party="x" * HUGE))
    bounded_message(caught.value, "header names party 'xxx", "x…' but the TLS identity is 'jprs'")


def test_a_huge_header_pairing(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    with pytest.raises(rej.PairingMismatchError) as caught:
        push(payload(records, pairing="p" * HUGE))
    message = bounded_message(caught.value, "unknown pairing 'ppp")
    assert message.endswith("p…'")


def test_a_huge_signature_keyid(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    env = Envelope(
        snapshot.SNAPSHOT_PAYLOAD_TYPE, payload(records), (Sig("k" * HUGE, b"\x00" * 64),)
    )
    with pytest.raises(rej.UntrustedSignerError) as caught:
        push(env=env)
    message = bounded_message(
        caught.value, "no signature by a key pinned for party 'jprs' (signed by: kkk"
    )
    assert message.endswith("k…)")


def test_many_signature_keyids_are_counted_not_listed(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    sigs = tuple(Sig(f"{i:064x}", b"\x00" * 64) for i in range(10_000))
    env = Envelope(snapshot.SNAPSHOT_PAYLOAD_TYPE, payload(records), sigs)
    with pytest.raises(rej.UntrustedSignerError) as caught:
        push(env=env)
    message = bounded_message(caught.value, f"(signed by: {0:064x}, {1:064x}, ")
    assert message.endswith(f"{3:064x} and 9996 more)")


def test_a_huge_payload_type(
    push: Callable[..., acc.Accepted], jprs_key: keys.SigningKey, records: list[CertRecord]
) -> None:
    # Signed by the pinned key, so the signature verifies and the type is what is refused.
    env = envelope.sign("t" * HUGE, payload(records), [jprs_key])
    with pytest.raises(rej.MalformedSnapshot) as caught:
        push(env=env)
    bounded_message(
        caught.value,
        "payload type 'ttt",
        "t…' is not 'application/vnd.invsync.snapshot.v1+protobuf'",
    )


def test_a_huge_tls_identity(push: Callable[..., acc.Accepted], records: list[CertRecord]) -> None:
    with pytest.raises(rej.UnknownPartyError) as caught:
        push(payload(records), tls_party="m" * HUGE)
    bounded_message(caught.value, "TLS identity 'mmm", "m…' is not an allowed party (jprs, secom)")


def test_control_characters_in_a_party_cannot_forge_a_line(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    with pytest.raises(rej.PartyMismatchError) as caught:
        push(payload(records, party="jprs\ninvsync-rule: forged"))
    message = bounded_message(caught.value, "invsync-rule: forged")
    assert re.search(r"header names party 'jprs\\+ninvsync-rule: forged' but", message)


def test_a_huge_previous_digest(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    with pytest.raises(rej.ChainError) as caught:
        push(payload(records, previous_digest=b"\xab" * HUGE))
    bounded_message(
        caught.value,
        "previous_digest abab",
        "b… is not the last accepted digest (empty: no snapshot accepted yet)",
    )


def test_a_huge_records_digest(
    push: Callable[..., acc.Accepted], records: list[CertRecord]
) -> None:
    def odd(msg: pb.SnapshotPayload) -> None:
        msg.header.records_digest = b"\xcd" * HUGE

    with pytest.raises(rej.DigestMismatchError) as caught:
        push(edited(payload(records), odd))
    bounded_message(caught.value, "records_digest cdcd", "d… is not the Merkle root ")


# The agent's side: verify_peer_snapshot()


@pytest.mark.parametrize(
    ("changes", "expected", "parts"),
    [
        (
            {"party": "x" * HUGE},
            rej.PartyMismatchError,
            ("peer snapshot names party 'xxx", "x…', not 'jprs'"),
        ),
        (
            {"pairing": "p" * HUGE},
            rej.PairingMismatchError,
            ("peer snapshot is for pairing 'ppp", "p…', not 'secom-jprs'"),
        ),
    ],
)
def test_a_huge_peer_header_field(
    policy: acc.AcceptancePolicy,
    jprs_key: keys.SigningKey,
    records: list[CertRecord],
    changes: dict[str, object],
    expected: type[Exception],
    parts: tuple[str, ...],
) -> None:
    env = snapshot.sign_snapshot(payload(records, **changes), jprs_key)
    with pytest.raises(expected) as caught:
        acc.verify_peer_snapshot(env, peer=policy.parties["jprs"], pairing=PAIRING, now=NOW)
    bounded_message(caught.value, *parts)


# decode_payload


def test_decode_keeps_a_huge_party_and_pairing_whole(records: list[CertRecord]) -> None:
    header = snapshot.decode_payload(payload(records, party="x" * HUGE, pairing="p" * HUGE)).header
    assert (header.party, header.pairing) == ("x" * HUGE, "p" * HUGE)


def _ack(msg: pb.SnapshotPayload, code: str, sha256: str) -> None:
    ack = msg.header.acknowledgements.add(code=code, sha256=sha256, reason="r")
    ack.acknowledged_at.FromDatetime(NOW)
    ack.expires_at.FromDatetime(NOW + timedelta(days=1))


def _revocation_reason(msg: pb.SnapshotPayload) -> None:
    msg.records[0].revocation.revoked_at.FromDatetime(NOW)
    msg.records[0].revocation.reason = "r" * HUGE


EDITS: list[tuple[str, Callable[[pb.SnapshotPayload], None], tuple[str, ...]]] = [
    (
        "lifecycle",
        lambda msg: setattr(msg.records[0], "lifecycle", "z" * HUGE),
        ("record 0 (", "): unknown lifecycle 'zzz", "z…'"),
    ),
    ("revocation reason", _revocation_reason, ("record 0 (", "unknown revocation reason 'rrr")),
    (
        "audit date",
        lambda msg: (
            msg.records[0].audit_scope.add().audit.CopyFrom(pb.AuditPeriod(period_start="9" * HUGE))
        ),
        ("record 0 (", " audit scope: '999", "9…' is not a YYYY-MM-DD date"),
    ),
    (
        "acknowledgement code",
        lambda msg: _ack(msg, "c" * HUGE, "A" * 64),
        ("header acknowledgement 0: unknown finding code 'ccc",),
    ),
    (
        "acknowledgement sha256",
        lambda msg: _ack(msg, "missing-at-subordinate", "a" * HUGE),
        ("header acknowledgement 0: ", "SHA-256: 'aaa"),
    ),
]


@pytest.mark.parametrize(("edit", "parts"), [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_decode_quotes_a_huge_field_bounded(
    records: list[CertRecord],
    edit: Callable[[pb.SnapshotPayload], None],
    parts: tuple[str, ...],
) -> None:
    with pytest.raises(rej.MalformedSnapshot) as caught:
        snapshot.decode_payload(edited(payload(records), edit))
    bounded_message(caught.value, *parts)


# Receipts, checkpoints, envelopes


def test_a_huge_receipt_payload_type() -> None:
    with pytest.raises(MalformedReceipt) as caught:
        decode_receipt(Envelope("t" * HUGE, b""))
    bounded_message(
        caught.value,
        "payload type 'ttt",
        "t…' is not 'application/vnd.invsync.receipt.v1+protobuf'",
    )


def test_a_huge_receipt_party(jprs_key: keys.SigningKey) -> None:
    note = sign_checkpoint(Checkpoint("srv", 1, b"\x00" * 32), "srv", jprs_key)
    receipt = Receipt("x" * HUGE, "p" * HUGE, 1, b"", NOW, "srv", 5, note)
    with pytest.raises(MalformedReceipt) as caught:
        logged_checkpoint(receipt, {"srv": jprs_key.public})
    bounded_message(
        caught.value,
        "receipt of xxx",
        "x… version 1: log entry 5 is not in its checkpoint's tree of size 1",
    )


def test_a_huge_checkpoint_origin(jprs_key: keys.SigningKey) -> None:
    note = sign_checkpoint(Checkpoint("o" * 7_000, 1, b"\x00" * 32), "srv", jprs_key)
    with pytest.raises(BadCheckpoint) as caught:
        open_checkpoint(note, "srv", {"srv": jprs_key.public})
    bounded_message(caught.value, "checkpoint names origin 'ooo", "o…', not 'srv'")
    # The name to open a note under may come from the note itself (claimed_origin).
    with pytest.raises(BadCheckpoint) as caught:
        open_pinned(note, "n" * HUGE, [jprs_key.public])
    bounded_message(caught.value, "checkpoint of nnn", "n…: no signature by a pinned key verifies")


def test_a_huge_keyid_in_a_verification_failure(jprs_key: keys.SigningKey) -> None:
    env = Envelope("t", b"", (Sig("k" * HUGE, b""), *(Sig(f"{i}", b"") for i in range(5))))
    with pytest.raises(SignatureError) as caught:
        envelope.verify_or_raise(env, {jprs_key.keyid: jprs_key.public}, who="the server")
    message = bounded_message(caught.value, "the server: 0 of 1 required signatures verified")
    assert message.endswith("signed by untrusted key kkk" + "k" * 197 + "…, 0, 1, 2 and 2 more")
