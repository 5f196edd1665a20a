"""A fast scan of a PEM bundle: each CERTIFICATE block's DER bytes and place, nothing parsed.

For comparing large lists by fingerprint first (`agent.inventory.by_fingerprint`). The scan
vouches only for files the line reader of `agent.sources.pem` reads to exactly the same
certificates: armor alone on its line at the start of it, a body of strict base64 lines, and no
other `-----` text anywhere. Anything else (another kind of block, indented armor, stray dashes,
a body with spaces, no certificate at all) raises `Irregular`, and the caller reads the file
with the line reader instead, which gives the precise error or the same certificates.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from invsync.agent.sources.reading import open_source, read_spans

_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]*)-----END CERTIFICATE-----"
)
_ARMOR = b"-----"
_READ_BYTES = 64 << 10
# A certificate block and the comment before it, longer together than this, are left to the
# line reader: the scan then holds at most this much, as the line reader holds one block.
_LONGEST_BLOCK = 256 << 10

Span = tuple[int, int]
"""Where a block lies in its file: (byte offset of its BEGIN armor, its length in bytes)."""


_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
_AROUND = " \t\r\n"  # what may surround a lone block, as blank lines and indentation


class Irregular(Exception):
    """The file is not one the fast scan vouches for: read it with the line reader."""


def scan_pem(path: Path) -> Iterator[tuple[Span, bytes]]:
    """(span, DER bytes) of every certificate, in file order, under the source size cap of
    `agent.sources.reading` (a SourceError past it)."""
    found = False
    with open_source(path) as file:
        tail, base, last = b"", 0, False
        while not last:
            chunk = file.read(_READ_BYTES) or b""
            last = not chunk
            data, end = tail + chunk, 0
            for match in _BLOCK.finditer(data):
                if not _line_ends(data, match.end(), last):
                    break  # the END line may go on in the next chunk: read it first
                _check_gap(data[end : match.start()], first=base + end == 0)
                yield (base + match.start(), match.end() - match.start()), _body_der(match)
                found, end = True, match.end()
            tail, base = data[end:], base + end
            if len(tail) > _LONGEST_BLOCK:  # rescanning it each read would take quadratic time
                raise Irregular(f"{path}: {len(tail)} bytes without a certificate block")
    if _ARMOR in tail or not found:
        raise Irregular(f"{path}: not a plain PEM bundle")


def lone_block_der(text: str) -> bytes | None:
    """The DER of `text` when it is one plain certificate block (the PEM cell of CCADB's
    report), read without a Python step per line; None for any other text, which the line
    reader then reads to the same bytes or names what is wrong with it."""
    text = text.strip(_AROUND)
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        return None
    head, line_break, body = text[len(_BEGIN) : len(text) - len(_END)].partition("\n")
    # The armor alone on its lines: spaces may end the BEGIN line, END must start its own.
    if not line_break or head.removesuffix("\r").strip(" \t") or body[-1:] not in ("", "\n"):
        return None
    try:
        # Strict: the alphabet and final padding only, so no armor or other text hides inside.
        return binascii.a2b_base64(body.replace("\r", "").replace("\n", ""), strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: text that is not ASCII
        return None


def ders_at(path: Path, spans: Iterable[Span]) -> Iterator[bytes]:
    """The DER bytes of blocks `scan_pem` found, by their spans, in the order given."""
    for span, data in zip(spans, read_spans(path, spans), strict=True):
        match = _BLOCK.fullmatch(data)
        if match is None:
            raise Irregular(f"{path}: no certificate block at byte {span[0]} any more")
        yield _body_der(match)


def _line_ends(data: bytes, at: int, last: bool) -> bool:
    """Whether the END armor ending at `at` ends its line (the line reader's armor must)."""
    rest = data[at : at + 2]
    if rest in (b"", b"\r"):
        return last
    if rest.startswith(b"\n") or rest == b"\r\n":
        return True
    raise Irregular("END armor with text after it on its line")


def _check_gap(gap: bytes, *, first: bool) -> None:
    # Text between blocks is a comment to the line reader, unless it holds armor of its own;
    # armor must start its line, or the line reader would not see it.
    if _ARMOR in gap or not (gap.endswith(b"\n") or (first and not gap)):
        raise Irregular("armor the fast scan does not read")


def _body_der(block: re.Match[bytes]) -> bytes:
    body = block.group(1)
    if body and not body.endswith((b"\n", b"\r")):
        # The END armor must start its line too: the line reader would take "...AB-----END"
        # for a body line and find no END.
        raise Irregular("END armor after text on its line")
    return _der(body)


def _der(body: bytes) -> bytes:
    try:
        return base64.b64decode(body.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError) as e:
        raise Irregular(f"body is not strict base64: {e}") from e
