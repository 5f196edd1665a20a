"""A report body as its differences from a held one (agent/exchange/body_delta.py): the pieces
rebuild the very bytes, a steady report costs its new findings, and pieces a server got wrong
rebuild nothing or bytes the caller's id check refuses."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.exchange import body_delta
from invsync.v1 import invsync_pb2 as pb


def _body(findings: range, as_of: str) -> bytes:
    """A body shaped like agent.report.body's: canonical JSON, findings between the header
    and the sides."""
    doc = {
        "as_of": as_of,
        "findings": [
            {"code": "missing-at-subordinate", "message": f"certificate {i} " + "x" * 600}
            for i in findings
        ],
        "root": {"party": "secom", "version": 7},
        "signers": [{"keyid": "a" * 64, "role": "server"}, {"keyid": "b" * 64, "role": "root"}],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def test_a_steady_report_is_sent_as_its_new_findings() -> None:
    before = _body(range(0, 300), "2026-12-05T10:00:00Z")
    after = _body(range(10, 320), "2026-12-05T11:00:00Z")  # 10 resolved, 20 new
    pieces = body_delta.diff(before, after)
    assert body_delta.rebuild(before, pieces, len(after)) == after
    literal = sum(len(p.literal) for p in pieces)
    # The 20 new findings, and the first and last pieces (a finding each, with the header
    # or the sides) whose neighbours changed.
    assert 20 * 600 < literal < 23 * 650
    assert body_delta.worth_sending(pieces, after)


def test_a_body_with_nothing_in_common_is_not_worth_a_delta() -> None:
    before, after = _body(range(0, 50), "2026-12-05T10:00:00Z"), _body(range(50, 100), "x")
    pieces = body_delta.diff(before, after)
    assert body_delta.rebuild(before, pieces, len(after)) == after
    assert not body_delta.worth_sending(pieces, after)


@pytest.mark.parametrize(
    ("pieces", "limit"),
    [
        ([pb.BodyPiece(base_start=0, base_length=11)], 100),  # past the base's 10 bytes
        ([pb.BodyPiece(base_start=2, base_length=1, literal=b"x")], 100),  # both
        ([pb.BodyPiece()], 100),  # neither
        ([pb.BodyPiece(literal=b"x" * 101)], 100),  # past the limit
    ],
    ids=["run past the base", "run and bytes", "empty piece", "over the limit"],
)
def test_pieces_a_server_got_wrong_rebuild_nothing(pieces: list[pb.BodyPiece], limit: int) -> None:
    assert body_delta.rebuild(b"0123456789", pieces, limit) is None


@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_any_two_bodies_round_trip(base: bytes, target: bytes) -> None:
    pieces = body_delta.diff(base, target)
    assert body_delta.rebuild(base, pieces, len(target)) == target


@given(
    st.binary(max_size=50),
    st.lists(
        st.builds(
            pb.BodyPiece,
            base_start=st.integers(0, 2**64 - 1),
            base_length=st.integers(0, 2**64 - 1),
            literal=st.binary(max_size=20),
        ),
        max_size=5,
    ),
)
def test_rebuild_never_raises_on_what_a_server_sends(
    base: bytes, pieces: list[pb.BodyPiece]
) -> None:
    rebuilt = body_delta.rebuild(base, pieces, 200)
    assert rebuilt is None or len(rebuilt) <= 200
