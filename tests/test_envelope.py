"""DSSE envelopes: PAE, sign and verify for each key kind, results, wire and JSON forms."""

from __future__ import annotations

import base64
import json

import pytest

from invsync.agent.errors import SignatureError
from invsync.agent.exchange import envelope, keys
from invsync.agent.exchange.envelope import Envelope, MalformedEnvelope, Sig
from invsync.v1 import invsync_pb2 as pb

TYPE = "application/vnd.invsync.snapshot.v1+protobuf"


@pytest.fixture(scope="module")
def alice(all_keys: dict[str, keys.SigningKey]) -> keys.SigningKey:
    return all_keys["ed25519"]


@pytest.fixture(scope="module")
def bob(all_keys: dict[str, keys.SigningKey]) -> keys.SigningKey:
    return all_keys["ecdsa-p256"]


def trust(*signers: keys.SigningKey) -> dict[str, keys.VerifyKey]:
    return {k.keyid: k.public for k in signers}


def test_pae_known_answer() -> None:
    # From the DSSE spec: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
    expected = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert envelope.pae("http://example.com/HelloWorld", b"hello world") == expected


def test_pae_counts_bytes_not_characters() -> None:
    assert envelope.pae("é", b"") == b"DSSEv1 2 \xc3\xa9 0 "


@pytest.mark.parametrize("kind", keys.KINDS)
def test_sign_verify_each_kind(all_keys: dict[str, keys.SigningKey], kind: str) -> None:
    key = all_keys[kind]
    env = envelope.sign(TYPE, b"payload", [key])
    result = envelope.verify(env, trust(key))
    assert result.verified_keyids == (key.keyid,)
    assert result.threshold_met(1)
    assert key.public.verify(env.signatures[0].sig, envelope.pae(TYPE, b"payload"))


def test_tampered_payload_is_invalid(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"payload", [alice])
    for payload in (b"Payload", b"payload\x00"):
        result = envelope.verify(Envelope(TYPE, payload, env.signatures), trust(alice))
        assert result.invalid_keyids == (alice.keyid,)
        assert not result.threshold_met(1)


def test_payload_type_is_signed(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"payload", [alice])
    other = Envelope("application/vnd.invsync.receipt.v1+protobuf", b"payload", env.signatures)
    assert envelope.verify(other, trust(alice)).invalid_keyids == (alice.keyid,)


def test_unknown_and_threshold(alice: keys.SigningKey, bob: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [alice, bob])
    result = envelope.verify(env, trust(alice))
    assert result.verified_keyids == (alice.keyid,)
    assert result.unknown_keyids == (bob.keyid,)
    assert result.threshold_met(1)
    assert not result.threshold_met(2)
    assert envelope.verify(env, trust(alice, bob)).threshold_met(2)


def test_one_key_counts_once(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [alice])
    doubled = Envelope(TYPE, b"p", env.signatures * 2)
    assert not envelope.verify(doubled, trust(alice)).threshold_met(2)


def test_add_signature_is_idempotent_per_key(alice: keys.SigningKey, bob: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [alice])
    assert envelope.add_signature(env, alice) == env
    assert [s.keyid for s in envelope.add_signature(env, bob).signatures] == [
        alice.keyid,
        bob.keyid,
    ]


def test_sign_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        envelope.sign(TYPE, b"p", [])


def test_threshold_below_one_is_a_bug() -> None:
    with pytest.raises(ValueError, match="at least 1, got 0"):
        envelope.VerificationResult().threshold_met(0)


def test_verify_or_raise_names_who_and_keys(alice: keys.SigningKey, bob: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [bob])
    with pytest.raises(
        SignatureError,
        match=f"report of pairing 'x': 0 of 1 required signatures verified; "
        f"signed by untrusted key {bob.keyid}",
    ):
        envelope.verify_or_raise(env, trust(alice), who="report of pairing 'x'")


def test_verify_or_raise_invalid(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [alice])
    bad = Envelope(TYPE, b"q", env.signatures)
    with pytest.raises(SignatureError, match=f"invalid signature by trusted key {alice.keyid}"):
        envelope.verify_or_raise(bad, trust(alice), who="x")


def test_verify_or_raise_unsigned(alice: keys.SigningKey) -> None:
    with pytest.raises(SignatureError, match="x: 0 of 1 required signatures verified; no sig"):
        envelope.verify_or_raise(Envelope(TYPE, b"p"), trust(alice), who="x")


def test_verify_or_raise_returns_result(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"p", [alice])
    assert envelope.verify_or_raise(env, trust(alice), who="x").verified_keyids == (alice.keyid,)


def test_pb_round_trip(alice: keys.SigningKey, bob: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"\x00\xffpayload", [alice, bob])
    wire = envelope.to_pb(env).SerializeToString()
    assert envelope.from_pb(pb.Envelope.FromString(wire)) == env
    assert Envelope.from_pb(env.to_pb()) == env


def test_json_round_trip(alice: keys.SigningKey) -> None:
    env = envelope.sign(TYPE, b"\x00\xffpayload", [alice])
    data = json.loads(json.dumps(envelope.to_json_dict(env)))
    assert data["payloadType"] == TYPE
    assert base64.b64decode(data["payload"]) == b"\x00\xffpayload"
    assert data["signatures"][0]["keyid"] == alice.keyid
    assert envelope.from_json_dict(data) == env
    assert Envelope.from_json_dict(env.to_json_dict()) == env


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"payload": "", "signatures": []}, "envelope: field 'payloadType' missing or not a str"),
        ({"payloadType": "t", "payload": "!!", "signatures": []}, "payload: not valid base64"),
        ({"payloadType": "t", "payload": "", "signatures": {}}, "field 'signatures' missing"),
        ({"payloadType": "t", "payload": "", "signatures": [1]}, r"signatures\[0\]: expected"),
        (
            {"payloadType": "t", "payload": "", "signatures": [{"keyid": "k", "sig": "*"}]},
            r"signatures\[0\]\.sig: not valid base64",
        ),
    ],
)
def test_json_malformed(data: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedEnvelope, match=message):
        envelope.from_json_dict(data)


def test_sig_keyid_must_match_trusted_key(alice: keys.SigningKey, bob: keys.SigningKey) -> None:
    # A mapping that files bob's key under alice's id must not let bob's signature pass as hers.
    env = envelope.sign(TYPE, b"p", [bob])
    forged = Envelope(TYPE, b"p", (Sig(alice.keyid, env.signatures[0].sig),))
    result = envelope.verify(forged, {alice.keyid: bob.public})
    assert result.invalid_keyids == (alice.keyid,)
