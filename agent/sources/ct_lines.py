"""A JSON Lines file of get-entries responses, read the fast way while its lines are plain.

`agent.sources.reading.open_lines` cuts any text exactly where `str.splitlines` does, in Python,
piece by piece, which a CT file's long lines make slow. Nearly every such file is plain: ASCII,
each line a response or blank. Read by `io.TextIOWrapper` with universal newlines, such a file
is cut where `str.splitlines` cuts it: in ASCII, the other breaks of `str.splitlines` (VT, FF,
FS, GS, RS) are control characters JSON refuses, and a blank line is taken only when it holds
spaces and tabs alone. `PlainLines` hands out the responses of the plain lines from the first on
and stops at the first other line (or a byte that is not UTF-8), leaving it and the rest to the
exact reading, which words any error. The file is opened by `reading.open_source`, under the
checks and size cap of the exact reading.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from invsync.agent.sources.reading import CHUNK_BYTES, open_source

_BLANK: list[object] = []
"""What `_entries` gives for a blank line: never handed out, so never changed."""


class PlainLines:
    """The responses of a file's plain lines, read once through `responses()`: after it,
    `count` lines were taken, and `complete` says whether they were all the file's lines."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.count = 0
        self.complete = False

    def responses(self) -> Iterator[list[object]]:
        with open_source(self._path) as file:
            text = io.TextIOWrapper(io.BufferedReader(file, CHUNK_BYTES), encoding="utf-8")
            with text:
                for line in self._lines(text):
                    entries = _entries(line)
                    if entries is None:
                        return
                    self.count += 1
                    if entries is not _BLANK:
                        yield entries
                    # Freed before the next line is read, so that its memory is reused for it
                    # (agent.sources.ct drops its own reference for the same reason).
                    del line, entries

    def _lines(self, text: io.TextIOWrapper) -> Iterator[str]:
        """The file's lines, until the decoder meets a byte that is not UTF-8 (it decodes ahead
        of the lines, a chunk at a time); `complete` once the last was read."""
        try:
            yield from text
        except UnicodeDecodeError:
            return
        self.complete = True


def _entries(line: str) -> list[object] | None:
    """The `entries` of a line holding a get-entries response, `_BLANK` for a blank line of
    spaces and tabs, None for any other line."""
    if not line.isascii():
        return None
    try:
        document = json.loads(line)  # its line break is JSON whitespace
    except (json.JSONDecodeError, RecursionError):  # the exact reader names the problem
        return _BLANK if not line.strip(" \t\n") else None
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        return None
    entries: list[object] = document["entries"]
    return entries
