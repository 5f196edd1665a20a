"""Issue 12 (hostile input): versions and times a sender may put in a snapshot header.

A version jump that would lock a pairing, a version the store cannot hold, and a Timestamp that
holds no time are each refused as a rejection before anything is stored: never an
OverflowError or ValueError answered as UNKNOWN. Pushed through a real in-process exchange.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.acceptance import DEFAULT_MAX_VERSION_STEP
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.receipt import MalformedReceipt, decode_receipt
from invsync.agent.exchange.rejections import status_of
from invsync.agent.exchange.snapshot import MAX_VERSION, sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import PAIRING, Keys, Rig, edited, make_rig, payload

STEP = DEFAULT_MAX_VERSION_STEP
STATUSES: dict[type[rej.Rejection], grpc.StatusCode] = {
    rej.VersionJumpError: grpc.StatusCode.FAILED_PRECONDITION,
    rej.VersionOutOfRangeError: grpc.StatusCode.INVALID_ARGUMENT,
    rej.MalformedSnapshot: grpc.StatusCode.INVALID_ARGUMENT,
}


def _state(rig: Rig) -> tuple[int, int, object]:
    return rig.snapshots(), rig.reports(), rig.store.last_accepted("jprs", PAIRING)


def refused(rig: Rig, data: bytes, kind: type[rej.Rejection], message: str) -> None:
    """jprs pushing `data` is refused with `kind` and `message`, and the store is unchanged."""
    before = _state(rig)
    with pytest.raises(kind, match=re.escape(message)) as caught:
        rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    assert type(caught.value) is kind
    assert _state(rig) == before
    assert status_of(caught.value) == STATUSES[kind]


def with_version(version: int) -> Callable[[pb.SnapshotPayload], None]:
    def edit(msg: pb.SnapshotPayload) -> None:
        msg.header.version = version

    return edit


def push_v1(rig: Rig, records: list[CertRecord]) -> bytes:
    data = payload(records)
    rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    return data


# Versions


def test_a_version_jump_past_the_step_is_refused(rig: Rig, records: list[CertRecord]) -> None:
    v1 = push_v1(rig, records)
    previous = hashlib.sha256(v1).digest()
    for version in (1 + STEP + 1, 3 + 10**12, MAX_VERSION):
        refused(
            rig,
            payload(records, version=version, previous_digest=previous),
            rej.VersionJumpError,
            f"version {version} is more than 1048576 (max_version_step) above the last "
            "accepted version 1 of party 'jprs' in pairing 'secom-jprs'",
        )


def test_a_step_of_exactly_the_maximum_is_accepted(rig: Rig, records: list[CertRecord]) -> None:
    v1 = push_v1(rig, records)
    data = payload(records, version=1 + STEP, previous_digest=hashlib.sha256(v1).digest())
    rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
    last = rig.store.last_accepted("jprs", PAIRING)
    assert last is not None and last.version == 1 + STEP


def test_a_first_snapshot_may_start_at_most_one_step_above_0(
    rig: Rig, records: list[CertRecord]
) -> None:
    refused(
        rig,
        payload(records, version=STEP + 1),
        rej.VersionJumpError,
        "version 1048577 is more than 1048576 (max_version_step) above 0 (a first snapshot) "
        "of party 'jprs' in pairing 'secom-jprs'",
    )
    rig.push(sign_snapshot(payload(records, version=STEP), rig.keys.jprs), "jprs")
    assert rig.snapshots() == 1


@pytest.mark.parametrize("version", [1 << 63, (1 << 64) - 1])
def test_a_version_the_store_cannot_hold_is_out_of_range(
    rig: Rig, records: list[CertRecord], version: int
) -> None:
    push_v1(rig, records)
    refused(
        rig,
        edited(payload(records), with_version(version)),
        rej.VersionOutOfRangeError,
        f"header version {version} is above the largest version {MAX_VERSION} (2^63 - 1)",
    )


def test_version_0_is_out_of_range(rig: Rig, records: list[CertRecord]) -> None:
    refused(
        rig,
        edited(payload(records), with_version(0)),
        rej.VersionOutOfRangeError,
        "snapshot rejected [version-out-of-range]: header version is 0; versions start at 1",
    )


def test_the_largest_version_leaves_a_refusal_not_an_overflow(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    # An operator who allows any step: the top version is accepted, the one after it is a
    # rejection (it was an OverflowError in the store, answered UNKNOWN).
    rig = make_rig(tmp_path / "server.db", keys, max_version_step=MAX_VERSION)
    try:
        top = payload(records, version=MAX_VERSION)
        rig.push(sign_snapshot(top, rig.keys.jprs), "jprs")
        after = edited(
            payload(records, previous_digest=hashlib.sha256(top).digest()), with_version(1 << 63)
        )
        refused(rig, after, rej.VersionOutOfRangeError, f"header version {1 << 63} is above")
    finally:
        rig.store.close()


# Times


BAD_TIMES = [
    (10**12, 0, "seconds 1000000000000 is outside 0001-01-01 to 9999-12-31 (not a time)"),
    (-(10**12), 0, "seconds -1000000000000 is outside 0001-01-01 to 9999-12-31 (not a time)"),
    (1614600000, -1, "nanos -1 is outside 0 to 999999999"),
    (1614600000, 10**9, "nanos 1000000000 is outside 0 to 999999999"),
]


@pytest.mark.parametrize("field", ["issued_at", "expires_at"])
@pytest.mark.parametrize(("seconds", "nanos", "why"), BAD_TIMES)
def test_a_header_time_out_of_range_is_malformed(
    rig: Rig, records: list[CertRecord], field: str, seconds: int, nanos: int, why: str
) -> None:
    def edit(msg: pb.SnapshotPayload) -> None:
        ts = getattr(msg.header, field)
        ts.seconds, ts.nanos = seconds, nanos

    refused(
        rig,
        edited(payload(records), edit),
        rej.MalformedSnapshot,
        f"snapshot rejected [malformed-snapshot]: header {field}: {why}",
    )


@pytest.mark.parametrize("field", ["acknowledged_at", "expires_at"])
def test_an_acknowledgement_time_out_of_range_is_malformed(
    rig: Rig, records: list[CertRecord], field: str
) -> None:
    def edit(msg: pb.SnapshotPayload) -> None:
        ack = msg.header.acknowledgements.add(code="x", sha256="y", reason="z")
        ack.acknowledged_at.seconds = ack.expires_at.seconds = 1614600000
        getattr(ack, field).nanos = -5

    refused(
        rig,
        edited(payload(records), edit),
        rej.MalformedSnapshot,
        f"header acknowledgement 0: {field}: nanos -5 is outside 0 to 999999999",
    )


def test_a_record_source_time_out_of_range_is_malformed(
    rig: Rig, records: list[CertRecord]
) -> None:
    def edit(msg: pb.SnapshotPayload) -> None:
        source = msg.records[0].sources.add(kind="pem", location="roots.pem")
        source.first_seen.seconds = 1614600000
        source.last_seen.seconds = 10**12

    data = edited(payload(records), edit)
    der = pb.SnapshotPayload.FromString(data).records[0].certificate_der
    first = hashlib.sha256(der).hexdigest().upper()
    refused(
        rig,
        data,
        rej.MalformedSnapshot,
        f"record 0 ({first}) source 0: last_seen: seconds 1000000000000 is outside",
    )


def test_a_receipt_time_out_of_range_is_a_malformed_receipt() -> None:
    body = pb.ReceiptBody(party="jprs", pairing=PAIRING, version=1)
    body.accepted_at.seconds = 10**12
    env = Envelope("application/vnd.invsync.receipt.v1+protobuf", body.SerializeToString(), ())
    with pytest.raises(
        MalformedReceipt,
        match=re.escape("receipt accepted_at: seconds 1000000000000 is outside 0001-01-01"),
    ):
        decode_receipt(env)


# Any version, any time: accepted, or a rejection


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    version=st.integers(0, (1 << 64) - 1),
    issued=st.tuples(
        st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-(1 << 31), (1 << 31) - 1)
    ),
    expires=st.tuples(st.integers(-(1 << 40), 1 << 40), st.integers(-(1 << 31), (1 << 31) - 1)),
)
def test_any_header_version_and_times_are_accepted_or_rejected(
    rig: Rig,
    records: list[CertRecord],
    version: int,
    issued: tuple[int, int],
    expires: tuple[int, int],
) -> None:
    def edit(msg: pb.SnapshotPayload) -> None:
        msg.header.version = version
        msg.header.issued_at.seconds, msg.header.issued_at.nanos = issued
        msg.header.expires_at.seconds, msg.header.expires_at.nanos = expires

    data = edited(payload(records), edit)
    with contextlib.suppress(rej.Rejection):  # anything else fails the test
        rig.push(sign_snapshot(data, rig.keys.jprs), "jprs")
