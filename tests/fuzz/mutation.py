"""Mutation strategies over real seed inputs, and the one property every fuzz test checks: a
reader returns a value or raises an InvsyncError naming its source, never another exception.

`TRIED` counts the inputs each entry point was given, for benchmarks/fuzz.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from invsync.agent.errors import InvsyncError

TRIED: Counter[str] = Counter()


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """One of `seeds` after one to four edits: byte flips, truncation, insertion, deletion, or
    lines dropped, repeated, swapped or spliced in from another seed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        data = _EDITS[draw(st.sampled_from(sorted(_EDITS)))](draw, data, seeds)
    return bytes(data)


def _position(draw: st.DrawFn, data: bytearray) -> int:
    return draw(st.integers(0, len(data)))


def _flip(draw: st.DrawFn, data: bytearray, _: Sequence[bytes]) -> bytearray:
    if data:
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    return data


def _truncate(draw: st.DrawFn, data: bytearray, _: Sequence[bytes]) -> bytearray:
    return data[: _position(draw, data)]


def _insert(draw: st.DrawFn, data: bytearray, _: Sequence[bytes]) -> bytearray:
    at = _position(draw, data)
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


def _delete(draw: st.DrawFn, data: bytearray, _: Sequence[bytes]) -> bytearray:
    start = _position(draw, data)
    return data[:start] + data[start + draw(st.integers(1, 64)) :]


def _lines(draw: st.DrawFn, data: bytearray, seeds: Sequence[bytes]) -> bytearray:
    lines = bytes(data).split(b"\n")
    other = draw(st.sampled_from(seeds)).split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    match draw(st.sampled_from(["drop", "repeat", "swap", "splice"])):
        case "drop":
            del lines[i]
        case "repeat":
            lines.insert(i, lines[i])
        case "swap":
            lines[i], lines[j] = lines[j], lines[i]
        case _:
            lines.insert(i, draw(st.sampled_from(other)))
    return bytearray(b"\n".join(lines))


_EDITS = {
    "flip": _flip,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "lines": _lines,
}


def hostile(seeds: Sequence[bytes], max_size: int = 4096) -> st.SearchStrategy[bytes]:
    """Mutated seeds, mostly, and arbitrary bytes."""
    return st.one_of(mutated(seeds), mutated(seeds), mutated(seeds), st.binary(max_size=max_size))


def value_or_own_error(entry: str, read: Callable[[], object], source: str | None) -> None:
    """Run `read`; only an InvsyncError naming `source` (when given) may leave it."""
    TRIED[entry] += 1
    try:
        read()
    except InvsyncError as e:
        assert source is None or source in str(e), f"{entry}: {e!r} does not name {source}"
