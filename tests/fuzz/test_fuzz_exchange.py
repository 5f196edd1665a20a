"""The exchange's readers of what a peer or the server sent: the DSSE envelope (its JSON form),
stream reassembly (`snapshot.from_chunks`), a verified payload's decoding (`decode_payload`), a
chain reset's statement (`decode_chain_reset`), and the evidence bundle's manifest and files.
Each returns a value or raises an InvsyncError. The checkpoint note has its own fuzz tests in
tests/test_checkpoint.py."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.evidence.bundle import read_bundle_files, read_manifest_json
from invsync.agent.exchange import envelope
from invsync.agent.exchange.chain_reset import (
    CHAIN_RESET_PAYLOAD_TYPE,
    ChainReset,
    decode_chain_reset,
    sign_chain_reset,
)
from invsync.agent.exchange.keys import generate
from invsync.agent.exchange.snapshot import (
    Base,
    build_payload,
    build_snapshot,
    decode_payload,
    from_chunks,
    sign_snapshot,
    to_chunks,
)
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.v1 import invsync_pb2 as pb
from tests.fuzz.mutation import hostile, value_or_own_error
from tests.fuzz.seeds import DERS

AT = datetime(2021, 3, 1, tzinfo=UTC)
PAYLOAD = build_payload(
    party="jprs",
    pairing="secom-jprs",
    role="subordinate",
    version=1,
    issued_at=AT,
    expires_at=AT + timedelta(days=7),
    records=[CertRecord(parse_certificate(d)) for d in DERS[:4]],
)
DELTA = build_snapshot(
    party="jprs",
    pairing="secom-jprs",
    role="subordinate",
    version=2,
    issued_at=AT,
    expires_at=AT + timedelta(days=7),
    records=[CertRecord(parse_certificate(d)) for d in DERS[1:6]],
    previous_digest=hashlib.sha256(PAYLOAD).digest(),
    base=PAYLOAD,
)
BASE = Base(hashlib.sha256(PAYLOAD).hexdigest(), PAYLOAD)
ENVELOPE = sign_snapshot(PAYLOAD, generate())
ENVELOPE_JSON = json.dumps(envelope.to_json_dict(ENVELOPE)).encode()
CHUNKS = [c.SerializeToString() for c in to_chunks(ENVELOPE, chunk_size=512)]
RESET = sign_chain_reset(
    ChainReset("exchange", "jprs", "secom-jprs", 1, (2, 3), "INC-42", AT), generate()
).payload
MANIFEST = json.dumps(
    {
        "format": "invsync-evidence/1",
        "server": {"name": "exchange.example", "origin": "exchange.example"},
        "scope": {"kind": "all"},
        "created_at": "2021-03-01T00:00:00Z",
        "files": {"entries.json": "00" * 32},
    }
).encode()
FILES = {
    "entries.json": b'{"entries": [{"index": 0, "leaf": "AA=="}]}',
    "proofs/inclusion.json": b'{"tree_size": 1, "proofs": [{"index": 0, "hashes": []}]}',
    "proofs/consistency.json": b'{"proofs": []}',
    "keys.json": b'{"server": [], "parties": {}, "rotations": []}',
}


@given(data=hostile([ENVELOPE_JSON]))
def test_fuzz_envelope_json(data: bytes) -> None:
    def read() -> object:
        try:
            obj = json.loads(data)
        except ValueError:
            return None  # the JSON layer is the caller's; the envelope reader gets a mapping
        return envelope.from_json_dict(obj) if isinstance(obj, dict) else None

    value_or_own_error("envelope", read, None)


@given(data=hostile([PAYLOAD], max_size=8192))
def test_fuzz_snapshot_payload(data: bytes) -> None:
    value_or_own_error("snapshot-payload", lambda: decode_payload(data), None)


@given(data=hostile([DELTA.payload], max_size=8192))
def test_fuzz_delta_on_its_base(data: bytes) -> None:
    value_or_own_error("delta", lambda: decode_payload(data, base=BASE), None)


@given(full=hostile([DELTA.full], max_size=8192))
def test_fuzz_served_whole_set(full: bytes) -> None:
    value_or_own_error("whole-set", lambda: decode_payload(DELTA.payload, full=full), None)


@given(
    chunks=st.lists(hostile(CHUNKS, max_size=600), max_size=8),
    max_bytes=st.sampled_from([64, 4096, 1 << 20]),
)
def test_fuzz_stream_reassembly(chunks: list[bytes], max_bytes: int) -> None:
    def read() -> object:
        parsed = []
        for raw in chunks:
            try:
                parsed.append(pb.SnapshotChunk.FromString(raw))
            except Exception:
                continue
        return from_chunks(parsed, max_bytes)

    value_or_own_error("stream", read, None)


@given(data=hostile([RESET], max_size=1024))
def test_fuzz_chain_reset(data: bytes) -> None:
    env = envelope.Envelope(CHAIN_RESET_PAYLOAD_TYPE, data, ())
    value_or_own_error("chain-reset", lambda: decode_chain_reset(env, "entry 9"), "entry 9")


def test_the_seeds_read_as_they_are() -> None:
    assert decode_payload(PAYLOAD).records
    assert len(decode_payload(DELTA.payload, base=BASE).records) == 5
    assert decode_payload(DELTA.payload, full=DELTA.full).full == DELTA.full
    reset = decode_chain_reset(envelope.Envelope(CHAIN_RESET_PAYLOAD_TYPE, RESET, ()), "entry 9")
    assert reset.superseded == (2, 3)
    assert envelope.from_json_dict(json.loads(ENVELOPE_JSON)) == ENVELOPE
    assert from_chunks([pb.SnapshotChunk.FromString(c) for c in CHUNKS], 1 << 20) == ENVELOPE
    read_bundle_files(read_manifest_json(MANIFEST), FILES)


@given(data=hostile([MANIFEST]))
def test_fuzz_evidence_manifest(data: bytes) -> None:
    value_or_own_error("evidence-manifest", lambda: read_manifest_json(data), None)


@given(name=st.sampled_from(sorted(FILES)), data=hostile(list(FILES.values())))
def test_fuzz_evidence_files(name: str, data: bytes) -> None:
    manifest = read_manifest_json(MANIFEST)
    files = {**FILES, name: data}
    value_or_own_error("evidence-files", lambda: read_bundle_files(manifest, files), None)
