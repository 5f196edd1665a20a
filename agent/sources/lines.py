"""Text decoded from a file's bytes as they are read, and split into lines as they come.

A reader of a line-oriented source holds one line at a time, not the file. Lines break where
`str.splitlines` breaks them (`STR_BREAKS`), or where a CSV file opened with `newline=""` does
(`CSV_BREAKS`), so that line numbers are the ones the whole text split at once would give. A
byte sequence that is not UTF-8 is a SourceError naming the source and its line.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from invsync.agent.errors import SourceError


@dataclass(frozen=True)
class Breaks:
    """Where lines end: `split` cuts text into lines, each with its break; `ends` holds every
    character a break can end with."""

    split: Callable[[str], list[str]]
    ends: str


STR_BREAKS = Breaks(
    lambda text: text.splitlines(keepends=True),
    "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029",
)
"""The breaks of `str.splitlines`: the JSON Lines and PEM readers have always split this way."""

CSV_BREAKS = Breaks(lambda text: io.StringIO(text, newline="").readlines(), "\n\r")
"""`\\n`, `\\r` and `\\r\\n`, kept: what `csv.reader` expects from a file opened with newline=""."""


def decoded_lines(
    chunks: Iterable[bytes],
    source: str,
    *,
    breaks: Breaks = STR_BREAKS,
    encoding: str = "utf-8",
    errors: str = "strict",
) -> Iterator[str]:
    """Every line of the text `chunks` hold, with its line break (the last line may have none).

    The lines before a byte that cannot be decoded are yielded, then a SourceError names the
    line that holds it: an import reports the first problem in file order.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    lines = _Lines(breaks)
    # The last, empty piece makes the decoder give up the bytes it still holds.
    for chunk, final in chain(((chunk, False) for chunk in chunks), [(b"", True)]):
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as e:
            # The decoder stops at the first bad byte: what comes before it is whole UTF-8.
            yield from lines.feed(e.object[: e.start].decode("utf-8"))
            yield from lines.cut()
            raise _not_utf8(source, lines.count + 1, e) from e
        yield from lines.feed(text)
    yield from lines.finish()


def strip_break(line: str, breaks: Breaks = STR_BREAKS) -> str:
    """`line` (one of decoded_lines) without its line break."""
    # Only the break is stripped: the characters before it cannot be break characters too,
    # since the line would have been cut there.
    return line.rstrip(breaks.ends)


class _Lines:
    """Cuts text fed in pieces into whole lines, holding back the line whose break has not come
    yet; a trailing `\\r` is held back too, since a `\\n` in the next piece belongs to it."""

    def __init__(self, breaks: Breaks) -> None:
        self._breaks = breaks
        self._pending: list[str] = []  # the start of a line not ended yet
        self._cr = False  # the pending line ends with "\r"
        self.count = 0  # lines handed out

    def feed(self, text: str) -> Iterator[str]:
        if self._cr and text.startswith("\n"):
            self._cr = False
            self._pending.append("\n")
            text = text[1:]
            yield self._take()
        if not text:
            return
        yield from self.cut()
        *whole, last = self._breaks.split(text)
        if whole:
            if self._pending:  # the first piece ends the line an earlier piece began
                whole[0] = self._joined(whole[0])
            self.count += len(whole)
            yield from whole
        self._pending.append(last)
        if last.endswith("\r"):
            self._cr = True
        elif last[-1] in self._breaks.ends:
            yield self._take()

    def cut(self) -> Iterator[str]:
        """Hand out a line held back for its `\\r`: what comes next is known not to be `\\n`."""
        if self._cr:
            self._cr = False
            yield self._take()

    def finish(self) -> Iterator[str]:
        """Hand out the last line, whatever its end."""
        self._cr = False
        if self._pending:
            yield self._take()

    def _take(self) -> str:
        self.count += 1
        return self._joined("")

    def _joined(self, end: str) -> str:
        """The pending pieces and `end` as one line; nothing is pending after."""
        self._pending.append(end)
        line = "".join(self._pending)
        self._pending.clear()
        return line


def _not_utf8(source: str, line: int, e: UnicodeDecodeError) -> SourceError:
    bad = e.object[e.start : e.end]
    what = "byte" if len(bad) == 1 else "bytes"
    shown = " ".join(f"0x{byte:02x}" for byte in bad)
    return SourceError(
        f"{source}: not UTF-8 text: line {line}: cannot decode {what} {shown} ({e.reason})"
    )
