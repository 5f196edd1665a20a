"""A report body sent as its differences from one the caller holds (issue 13: bytes down).

A steady cycle's report repeats most of the last one: the findings still open, the sides and
signers. A caller names the reports it holds (GetReportRequest.known); the server may answer a
new report's body as pieces, each a run of a held body's bytes or new bytes. The report's id is
the SHA-256 of its body, so the caller checks what it rebuilt against the id it asked about
before anything reads it, and asks for the body whole when it does not match.

Bodies are compared in pieces that end after each `},{`: in the canonical JSON of a report
body (agent.report.body) that is the end of one finding and the start of the next. Any bytes
work (a body with none is one piece); the split only decides how much is found again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from invsync.v1 import invsync_pb2 as pb

_END = b"},{"
# A delta is sent only when it is at most this share of the body's size: otherwise the body.
WORTH_IT = 0.75


def diff(base: bytes, target: bytes) -> list[pb.BodyPiece]:
    """Pieces that rebuild `target` from `base` (`rebuild`): runs of `base` where a piece of
    `target` is found in it, new bytes elsewhere, neighbours merged."""
    found: dict[bytes, int] = {}
    for at, piece in _pieces(base):
        found.setdefault(piece, at)
    pieces: list[pb.BodyPiece] = []
    for _, piece in _pieces(target):
        held = found.get(piece)
        last = pieces[-1] if pieces else None
        if held is None:
            if last is not None and not last.base_length:
                last.literal += piece
            else:
                pieces.append(pb.BodyPiece(literal=piece))
        elif last is not None and last.base_length and last.base_start + last.base_length == held:
            last.base_length += len(piece)
        else:
            pieces.append(pb.BodyPiece(base_start=held, base_length=len(piece)))
    return pieces


def worth_sending(pieces: Sequence[pb.BodyPiece], target: bytes) -> bool:
    size = sum(len(p.literal) + 12 for p in pieces)  # 12: a run's two numbers, about
    return size <= WORTH_IT * len(target)


def rebuild(base: bytes, pieces: Sequence[pb.BodyPiece], limit: int) -> bytes | None:
    """The body the pieces make from `base`; None when a run is outside `base`, a piece is
    both or neither, or the result would pass `limit` bytes (what a server sends is unchecked
    until the caller compares the result's SHA-256 with the report id)."""
    out = bytearray()
    for piece in pieces:
        if bool(piece.base_length) == bool(piece.literal):  # both, or neither
            return None
        if piece.base_length:
            end = piece.base_start + piece.base_length
            if end > len(base):
                return None
            out += base[piece.base_start : end]
        else:
            out += piece.literal
        if len(out) > limit:
            return None
    return bytes(out)


def _pieces(body: bytes) -> Iterator[tuple[int, bytes]]:
    start = 0
    while start < len(body):
        at = body.find(_END, start)
        end = len(body) if at < 0 else at + len(_END)
        yield start, body[start:end]
        start = end
