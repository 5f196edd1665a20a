"""DSSE-style signed envelopes: the payload stays bytes, signatures cover PAE(type, payload).

The payload and its envelope are separate types (as in python-tuf's DSSE support): a receiver
verifies the exact bytes it received, before anything parses them, and never re-serializes a
payload to check a signature (protobuf serialization is not canonical). The payload type is
inside the signed PAE, so a signature over a receipt cannot be replayed as a snapshot.

`verify` returns a `VerificationResult` and never raises, so reports can show partial results;
`verify_or_raise` is for callers that only need yes or no.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from invsync.agent.errors import SignatureError, bounded
from invsync.agent.exchange.keys import SigningKey, VerifyKey
from invsync.v1 import invsync_pb2 as pb


class MalformedEnvelope(SignatureError):
    """An envelope (JSON or protobuf) is missing a field or has one of the wrong shape."""

    hint = "The envelope file or message is damaged or not a DSSE envelope; fetch it again."


# How many key ids a message lists: a sender may attach any number of signatures.
SHOWN_KEYIDS = 4


def shown_keyids(keyids: Sequence[str]) -> str:
    """Key ids a sender named, fit to quote: each `bounded`, the first SHOWN_KEYIDS of them,
    then how many more there are."""
    shown = ", ".join(bounded(k) for k in keyids[:SHOWN_KEYIDS])
    rest = len(keyids) - SHOWN_KEYIDS
    return f"{shown} and {rest} more" if rest > 0 else shown


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a signature actually covers.

    ``b"DSSEv1 " + len(type) + b" " + type + b" " + len(payload) + b" " + payload``, lengths as
    ASCII decimal byte counts, so no choice of type or payload can be mistaken for another.
    """
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


@dataclass(frozen=True)
class Sig:
    keyid: str  # lowercase hex SHA-256 of the signer's SubjectPublicKeyInfo DER
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes  # the exact signed bytes; never re-serialized
    signatures: tuple[Sig, ...] = ()

    def to_pb(self) -> pb.Envelope:
        """The wire form; same as `to_pb(env)`."""
        return to_pb(self)

    @classmethod
    def from_pb(cls, msg: pb.Envelope) -> Envelope:
        """From the wire form; same as `from_pb(msg)`."""
        return from_pb(msg)

    def to_json_dict(self) -> dict[str, Any]:
        """The DSSE JSON shape; same as `to_json_dict(env)`."""
        return to_json_dict(self)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """From the DSSE JSON shape; same as `from_json_dict(data)`."""
        return from_json_dict(data)


@dataclass(frozen=True)
class VerificationResult:
    """Which signatures of an envelope verified against a set of trusted keys.

    A key counts once however many signatures carry its key id; a trusted key with one good
    signature is verified even if another of its signatures is bad.
    """

    verified: Mapping[str, VerifyKey] = field(default_factory=dict)  # keyid -> trusted key
    unknown_keyids: tuple[str, ...] = ()  # signatures by keys not in the trusted set
    invalid_keyids: tuple[str, ...] = ()  # trusted keys none of whose signatures verified

    @property
    def verified_keyids(self) -> tuple[str, ...]:
        return tuple(sorted(self.verified))

    def threshold_met(self, threshold: int) -> bool:
        """True when at least `threshold` distinct trusted keys signed (threshold >= 1)."""
        if threshold < 1:
            raise ValueError(f"a signature threshold must be at least 1, got {threshold}")
        return len(self.verified) >= threshold


def sign(payload_type: str, payload: bytes, keys: Sequence[SigningKey]) -> Envelope:
    """An envelope of `payload` signed by every key in `keys` (at least one)."""
    if not keys:
        raise ValueError("sign() needs at least one key")
    env = Envelope(payload_type, payload)
    for key in keys:
        env = add_signature(env, key)
    return env


def add_signature(env: Envelope, key: SigningKey) -> Envelope:
    """`env` with `key`'s signature added; unchanged if that key already signed it."""
    if any(s.keyid == key.keyid for s in env.signatures):
        return env
    sig = Sig(key.keyid, key.sign(pae(env.payload_type, env.payload)))
    return replace(env, signatures=(*env.signatures, sig))


def verify(env: Envelope, trusted: Mapping[str, VerifyKey]) -> VerificationResult:
    """Check every signature of `env` against `trusted` (keyid -> key). Never raises."""
    message = pae(env.payload_type, env.payload)
    verified: dict[str, VerifyKey] = {}
    tried: set[str] = set()
    unknown: list[str] = []
    for s in env.signatures:
        key = trusted.get(s.keyid)
        if key is None:
            unknown.append(s.keyid)
        elif key.keyid == s.keyid and key.verify(s.sig, message):
            verified[s.keyid] = key
        else:
            tried.add(s.keyid)
    invalid = sorted(tried - verified.keys())
    return VerificationResult(verified, tuple(dict.fromkeys(unknown)), tuple(invalid))


def verify_or_raise(
    env: Envelope, trusted: Mapping[str, VerifyKey], *, who: str, threshold: int = 1
) -> VerificationResult:
    """`verify`, raising SignatureError naming `who` and the key ids unless `threshold` is met."""
    result = verify(env, trusted)
    if not result.threshold_met(threshold):
        raise SignatureError(_failure_message(result, who=who, threshold=threshold))
    return result


def _failure_message(result: VerificationResult, *, who: str, threshold: int) -> str:
    parts = [f"{who}: {len(result.verified)} of {threshold} required signatures verified"]
    if result.invalid_keyids:
        parts.append(f"invalid signature by trusted key {shown_keyids(result.invalid_keyids)}")
    if result.unknown_keyids:
        parts.append(f"signed by untrusted key {shown_keyids(result.unknown_keyids)}")
    if not result.invalid_keyids and not result.unknown_keyids:
        parts.append("no signatures")
    return "; ".join(parts)


def to_pb(env: Envelope) -> pb.Envelope:
    """The wire form of `env`."""
    return pb.Envelope(
        payload_type=env.payload_type,
        payload=env.payload,
        signatures=[pb.Signature(keyid=s.keyid, sig=s.sig) for s in env.signatures],
    )


def from_pb(msg: pb.Envelope) -> Envelope:
    """An Envelope from its wire form (the payload bytes are kept exactly)."""
    sigs = tuple(Sig(s.keyid, s.sig) for s in msg.signatures)
    return Envelope(msg.payload_type, msg.payload, sigs)


def to_json_dict(env: Envelope) -> dict[str, Any]:
    """The DSSE JSON shape: payloadType, base64 payload, signatures [{keyid, base64 sig}]."""
    fields = json_fields_but_payload(env)
    return {
        "payloadType": fields["payloadType"],
        "payload": _b64(env.payload),
        "signatures": fields["signatures"],
    }


def json_fields_but_payload(env: Envelope) -> dict[str, Any]:
    """`to_json_dict` without its payload (agent.exchange.log_entry.holds_canonical)."""
    signatures = [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in env.signatures]
    return {"payloadType": env.payload_type, "signatures": signatures}


def from_json_dict(data: Mapping[str, Any]) -> Envelope:
    """Parse the DSSE JSON shape; MalformedEnvelope names the field that is wrong."""
    payload_type = _field(data, "payloadType", str, "envelope")
    payload = _unb64(_field(data, "payload", str, "envelope"), "payload")
    raw_sigs = _field(data, "signatures", list, "envelope")
    return Envelope(
        payload_type, payload, tuple(_sig_from_json(s, i) for i, s in enumerate(raw_sigs))
    )


def _sig_from_json(item: object, index: int) -> Sig:
    where = f"signatures[{index}]"
    if not isinstance(item, Mapping):
        raise MalformedEnvelope(f"{where}: expected an object")
    keyid = _field(item, "keyid", str, where)
    return Sig(keyid, _unb64(_field(item, "sig", str, where), f"{where}.sig"))


def _field(data: Mapping[str, Any], name: str, kind: type[Any], where: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise MalformedEnvelope(f"{where}: field {name!r} missing or not a {kind.__name__}")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedEnvelope(f"{where}: not valid base64 ({e})") from e
