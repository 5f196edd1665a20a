"""PEM and DER certificate files, and directories of them (the CA repository).

Every certificate a file holds becomes a record; anything else in a PEM file (a private key, a
CSR, a CRL) is refused, because an inventory must never carry keys and a silently skipped block
is a certificate nobody tracks.

A plain bundle is read by the fast scan of `agent.sources.pem_scan`; any other PEM file (or one
with a certificate that does not parse, to name its line) line by line: the state machine over
BEGIN/END armor holds only the block it is in, and each certificate is parsed when its END line
comes, so a large bundle costs the records it yields, not its size. Errors come in file order:
the first bad line or block stops it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from invsync.agent.errors import CertificateError, SourceError
from invsync.agent.model.der import base64_bytes
from invsync.agent.model.record import CertInfo, CertRecord, SourceRef, parse_certificate
from invsync.agent.sources.detect import CERT_SUFFIXES, DER, PEM, sniff
from invsync.agent.sources.pem_scan import Irregular, scan_pem
from invsync.agent.sources.reading import open_lines, read_bytes

_BEGIN = re.compile(r"^-----BEGIN ([^-]*)-----\s*$")
_END = re.compile(r"^-----END ([^-]*)-----\s*$")
_CERTIFICATE = "CERTIFICATE"

Where = Callable[[int], str]
"""Names a line for error messages: `where(14)` -> `"bad.pem:14"`."""

Lines = Iterable[tuple[int, str]]
"""Text as (line number, line without its break)."""


@dataclass(frozen=True)
class _Block:
    label: str
    line: int  # 1-based line of the BEGIN armor
    body: str


def load_pem_file(path: Path, now: datetime) -> list[CertRecord]:
    """Every certificate of a PEM file or bundle, in file order."""
    infos = _scanned(path)
    if infos is None:
        # Bytes that are not UTF-8 are replaced, not refused: outside armor they are comments,
        # which are ignored; inside a block they fail its base64 check, naming the block.
        with open_lines(path, errors="replace") as lines:
            infos = _certificates(lines, lambda line: f"{path}:{line}")
    if not infos:
        raise SourceError(f"{path}: no certificate found (expected PEM CERTIFICATE blocks)")
    sources = _sources(PEM, path, now)  # one value, shared by the file's records
    return [CertRecord(info, sources=sources) for info in infos]


def _scanned(path: Path) -> list[CertInfo] | None:
    """The certificates by the fast scan (a plain bundle, read without a Python step per line),
    or None: the line reader then gives the same certificates or names the bad line. The whole
    file is scanned before any certificate is parsed: a refusal found at its end costs no
    parsing that the line reader would do again."""
    try:
        ders = [der for _, der in scan_pem(path)]
    except Irregular:
        return None
    try:
        return [parse_certificate(der) for der in ders]
    except CertificateError:
        return None


def load_der_file(path: Path, now: datetime) -> list[CertRecord]:
    """The one certificate of a DER file."""
    data = read_bytes(path)
    if not data:
        raise SourceError(f"{path}: file is empty, no certificate found")
    try:
        info = parse_certificate(data)
    except ValueError as e:
        raise SourceError(f"{path}: not a DER certificate: {e}") from e
    return [_record(info, DER, path, now)]


def load_directory(path: Path, now: datetime) -> list[CertRecord]:
    """Every certificate file under a directory, recursively, in sorted path order."""
    if not path.is_dir():
        raise SourceError(f"{path}: not a directory")
    files = sorted(p for p in _walk(path) if p.suffix.lower() in CERT_SUFFIXES)
    records = [record for file in files for record in _load_file(file, now)]
    if not records:
        suffixes = " ".join(CERT_SUFFIXES)
        raise SourceError(f"{path}: directory holds no certificate files ({suffixes})")
    return records


def pem_certificates(text: str, where: Where) -> list[CertInfo]:
    """Parse every CERTIFICATE block of `text`; any other block or a bad one is a SourceError
    (a block that is not a certificate is reported before a certificate that does not parse)."""
    blocks = list(_blocks(_split(text), where))
    return [_parse_block(block, number, where) for number, block in enumerate(blocks, 1)]


def pem_ders(text: str, where: Where) -> list[bytes]:
    """The DER bytes of every CERTIFICATE block of `text`, not parsed yet: for readers that check
    a fingerprint first or parse each distinct certificate once (CCADB's PEM report)."""
    blocks = list(_blocks(_split(text), where))
    return [_block_der(block, number, where) for number, block in enumerate(blocks, 1)]


def _certificates(lines: Lines, where: Where) -> list[CertInfo]:
    # Each block is parsed as soon as its END line is read, so that only that one is held.
    blocks = enumerate(_blocks(lines, where), 1)
    return [_parse_block(block, number, where) for number, block in blocks]


def _split(text: str) -> Lines:
    return enumerate(text.splitlines(), 1)


def _walk(top: Path) -> Iterator[Path]:
    """Every entry under `top` that is not a directory (read_bytes refuses FIFOs, devices and
    sockets); a directory that cannot be listed is a SourceError naming it."""
    for folder, _, names in os.walk(top, onerror=_unlistable):
        yield from (Path(folder) / name for name in names)


def _unlistable(e: OSError) -> None:
    where = e.filename or "directory"
    if isinstance(e, PermissionError):
        raise SourceError(f"{where}: cannot list directory: permission denied") from e
    raise SourceError(f"{where}: cannot list directory: {e.strerror or e}") from e


def _load_file(path: Path, now: datetime) -> list[CertRecord]:
    if path.suffix.lower() == ".pem" or sniff(path) == PEM:
        return load_pem_file(path, now)
    return load_der_file(path, now)


def _record(info: CertInfo, kind: str, path: Path, now: datetime) -> CertRecord:
    return CertRecord(info, sources=_sources(kind, path, now))


def _sources(kind: str, path: Path, now: datetime) -> tuple[SourceRef, ...]:
    return (SourceRef(kind, str(path), now, now),)


def _blocks(numbered: Lines, where: Where) -> Iterator[_Block]:
    # Text outside armor (bundle comments such as "# Subject: ...") is allowed and ignored.
    lines = iter(numbered)
    for number, line in lines:
        # Only a line holding the armor's dashes can match: the test is the common case's cost.
        begin = _BEGIN.match(line.strip()) if "-----BEGIN" in line else None
        if begin is None:
            continue
        label = begin.group(1)
        if label != _CERTIFICATE:
            raise SourceError(
                f"{where(number)}: PEM block {label!r} is not a certificate"
                " (keys and other objects do not belong in an inventory)"
            )
        yield _Block(label, number, _body(lines, label, where(number)))


def _body(lines: Iterator[tuple[int, str]], label: str, where: str) -> str:
    body: list[str] = []
    for _, line in lines:
        end = _END.match(line.strip()) if "-----END" in line else None
        if end is not None:
            if end.group(1) != label:
                raise SourceError(f"{where}: BEGIN {label} closed by END {end.group(1)}")
            return "".join(body)
        body.append(line.strip())
    raise SourceError(f"{where}: BEGIN {label} has no END line")


def _parse_block(block: _Block, number: int, where: Where) -> CertInfo:
    der = _block_der(block, number, where)
    try:
        return parse_certificate(der)
    except ValueError as e:
        raise SourceError(f"{_cannot_parse(block, number, where)}: {e}") from e


def _block_der(block: _Block, number: int, where: Where) -> bytes:
    return base64_bytes(block.body, _cannot_parse(block, number, where))


def _cannot_parse(block: _Block, number: int, where: Where) -> str:
    return f"{where(block.line)}: certificate {number} cannot be parsed"
