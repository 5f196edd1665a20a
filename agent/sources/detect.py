"""Which reader a source spec names: `KIND:PATH`, or detection from the path itself."""

from __future__ import annotations

from pathlib import Path

from invsync.agent.sources.reading import read_bytes
from invsync.agent.sources.tabular import csv_header

PEM = "pem"
DER = "der"
DIR = "dir"
ISSUANCE_LOG = "issuance-log"
PKCS7 = "pkcs7"
CCADB = "ccadb"
AUDIT_SCOPE = "audit-scope"
CRL = "crl"
CT = "ct"
CT_LOG = "ct-log"
KINDS = (PEM, DER, DIR, ISSUANCE_LOG, PKCS7, CCADB, AUDIT_SCOPE, CRL, CT, CT_LOG)

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
    if spec.startswith(("https://", "http://")):
        return CT_LOG, Path(spec)
    return None, Path(spec)


def detect_kind(path: Path) -> str:
    """Guess the kind of a source from its name and, when the name is ambiguous, its bytes."""
    if path.is_dir():
        return DIR
    suffix = _suffix(path)
    by_suffix = {
        ".jsonl": ISSUANCE_LOG,
        ".pem": PEM,
        ".p7b": PKCS7,
        ".p7c": PKCS7,
        ".crl": CRL,
        ".json": CT,
        ".txt": AUDIT_SCOPE,
        ".pdf": AUDIT_SCOPE,
    }
    if suffix in by_suffix:
        return by_suffix[suffix]
    if suffix == ".csv":
        return _csv_kind(path)
    return sniff(path)


def _suffix(path: Path) -> str:
    # A compressed CCADB report keeps its kind: report.csv.gz is a .csv.
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _csv_kind(path: Path) -> str:
    """By the header row: CCADB's reports, an issuance log, or an audit's fingerprint list."""
    header = {name.strip().casefold() for name in csv_header(path)}
    if {"sha-256 fingerprint", "x.509 certificate (pem)"} <= header or (
        "certificate record type" in header
    ):
        return CCADB
    if "certificate" in header:
        return ISSUANCE_LOG
    return AUDIT_SCOPE


def sniff(path: Path) -> str:
    """By content: a PEM CRL or PKCS#7, PEM certificates, else DER (`.crt` and `.cer` are
    either)."""
    data = read_bytes(path)
    if b"-----BEGIN X509 CRL-----" in data:
        return CRL
    if b"-----BEGIN PKCS7-----" in data or b"-----BEGIN PKCS #7 SIGNED DATA-----" in data:
        return PKCS7
    return PEM if b"-----BEGIN " in data else DER
