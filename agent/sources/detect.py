"""Which reader a source spec names: `KIND:PATH`, or detection from the path itself."""

from __future__ import annotations

from pathlib import Path

from agent.errors import SourceError

PEM = "pem"
DER = "der"
DIR = "dir"
ISSUANCE_LOG = "issuance-log"
KINDS = (PEM, DER, DIR, ISSUANCE_LOG)

_SNIFFED_SUFFIXES = (".der", ".cer", ".crt")
# Certificate files a directory source picks up; everything else in the tree is ignored.
CERT_SUFFIXES = (".pem", *_SNIFFED_SUFFIXES)


def parse_spec(spec: str) -> tuple[str | None, Path]:
    """Split `KIND:PATH` into its kind and path; `None` when the spec is a plain path.

    Only a known kind counts as a prefix, so a path that happens to hold a colon stays whole.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS and rest:
        return kind, Path(rest)
    return None, Path(spec)


def detect_kind(path: Path) -> str:
    """Guess the kind of a source from its name and, when the name is ambiguous, its bytes."""
    if path.is_dir():
        return DIR
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return ISSUANCE_LOG
    if suffix == ".pem":
        return PEM
    return sniff(path)


def sniff(path: Path) -> str:
    """PEM if the file holds a PEM armor line, else DER (`.crt` and `.cer` are either)."""
    return PEM if b"-----BEGIN " in read_bytes(path) else DER


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is a SourceError naming it."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from e
