"""The floor of an import of CCADB's PEM report: the libraries' own work on the same rows, with
no invsync code (issue 13's target of 20,000 certificates/s is judged against it).

What any importer built on the project's fixed libraries must do for each row, and nothing more:
- read: gunzip (for `.csv.gz`), UTF-8, `csv`, the PEM cell's base64 (`binascii`, no checks),
  the SHA-256 of the DER, then for each distinct certificate `cryptography`'s load, its
  extensions decoded (`cert.extensions`) and its public key loaded (`cert.public_key()`);
- store: each distinct certificate's DER by its SHA-256 into a new SQLite file (WAL,
  `synchronous=FULL`, as the agent store), one `executemany` in one transaction.

No name is formatted, no field derived, no row merged or checked: a floor, not an importer.
Its rate is what invsync's import could reach at most without replacing these libraries.
"""

from __future__ import annotations

import binascii
import csv
import gzip
import hashlib
import io
import sqlite3
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from invsync.agent.model.record import DECODE_ERRORS

PEM_COLUMN = "X.509 Certificate (PEM)"
_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"
# What cryptography raises for certificates it refuses (a few of the report's), caught as the
# import's readers catch it: a tuple of exception types, no invsync work in the floor.
_REFUSALS = DECODE_ERRORS


@dataclass(frozen=True)
class FloorRun:
    rows: int
    records: int
    skipped: int  # distinct certificates cryptography refuses to load, as the import skips them
    read_s: float
    store_s: float


def floor_run(files: list[Path]) -> FloorRun:
    """One floor pass over `files`: timed read, then timed store."""
    started = time.perf_counter()
    rows, ders, refused = 0, dict[str, bytes](), set[str]()
    for path in files:
        for pem in _pem_cells(path):
            rows += 1
            _keep(pem, ders, refused)
    read = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        stored_from = time.perf_counter()
        _store(Path(tmp) / "floor.db", ders)
        stored = time.perf_counter()
    return FloorRun(rows, len(ders), len(refused), read - started, stored - stored_from)


def _pem_cells(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    column = next(reader).index(PEM_COLUMN)
    return [row[column] for row in reader if len(row) > column]


def _keep(pem: str, ders: dict[str, bytes], refused: set[str]) -> None:
    body = pem.strip()
    der = binascii.a2b_base64(body[len(_BEGIN) : len(body) - len(_END)])
    sha256 = hashlib.sha256(der).hexdigest().upper()
    if sha256 in ders or sha256 in refused:
        return
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.public_key()
    except _REFUSALS:
        refused.add(sha256)  # not stored, as the import skips it
        return
    with suppress(*_REFUSALS):  # the import keeps such a certificate, its extensions unknown
        cert.extensions  # noqa: B018 - decoding them is the work measured
    ders[sha256] = der


def _store(path: Path, ders: dict[str, bytes]) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE certificates (sha256 TEXT PRIMARY KEY NOT NULL, der BLOB)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO certificates VALUES (?, ?)", ders.items())
        db.execute("COMMIT")
    finally:
        db.close()
