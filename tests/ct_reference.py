"""The CT reader as it was before its fast path (issue 13, item 5), kept as the tests' reference.

`reference_entries_facts` is the former `agent.sources.ct.entries_facts`, word for word: every
entry decoded by `ct_entries.decode_entry`, every certificate's extensions read by
`cryptography`. `previous_reader()` makes `load_ct_entries` read as it did: with those entries,
and every JSON Lines line through `reading.open_lines` (the fast line reading takes none).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import DECODE_ERRORS, CertRecord, SourceRef, parse_certificate
from invsync.agent.model.signatures import signed_by
from invsync.agent.sources import ct
from invsync.agent.sources.ct_entries import EntryError, decode_entry


def reference_entries_facts(
    entries: Sequence[object],
    source: str,
    first_index: int,
    keys: Sequence[PublicKeyTypes],
    ctx: SourceContext,
) -> Facts:
    records: list[CertRecord] = []
    skipped: list[Skipped] = []
    for index, entry in enumerate(entries, first_index):
        location = f"{source}#{index}"
        try:
            record = _entry_record(entry, location, keys, ctx.now)
        except EntryError as e:
            if not ctx.skip_invalid:
                raise SourceError(f"{location}: {e}") from e
            skipped.append(Skipped(location, str(e)))
            continue
        if record is not None:
            records.append(record)
    return Facts(records=tuple(records), skipped=tuple(skipped))


def _entry_record(
    raw: object, location: str, keys: Sequence[PublicKeyTypes], now: datetime
) -> CertRecord | None:
    entry = decode_entry(raw)
    what = "pre-certificate" if entry.precert else "certificate"
    try:
        cert = x509.load_der_x509_certificate(entry.certificate)
        if not reference_is_ca(cert) or not any(signed_by(cert, key) for key in keys):
            return None
        info = parse_certificate(entry.certificate)
    except DECODE_ERRORS as e:
        raise EntryError(f"{what} cannot be parsed: {e}") from e
    kind = ct.CT_PRECERT if entry.precert else ct.CT
    return CertRecord(info, sources=(SourceRef(kind, location, now, now),))


def reference_is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


class _NoPlainLines:
    """Takes no line, so that `agent.sources.ct` reads them all through `open_lines`."""

    def __init__(self, path: Path) -> None:
        self.count = 0
        self.complete = False

    def responses(self) -> Iterator[list[object]]:
        yield from ()


@contextmanager
def previous_reader() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ct, "entries_facts", reference_entries_facts)
        patch.setattr(ct, "PlainLines", _NoPlainLines)
        yield


Outcome = tuple[Facts | str, list[tuple[int, int | None]]]


def outcome(path: Path, ctx: SourceContext) -> Outcome:
    """What `load_ct_entries` gives for `path`: its Facts or its error's message, and the
    progress it reported."""
    calls: list[tuple[int, int | None]] = []
    watched = replace(ctx, progress=lambda done, total: calls.append((done, total)))
    try:
        return ct.load_ct_entries(path, watched), calls
    except SourceError as e:
        return str(e), calls


def both(path: Path, ctx: SourceContext) -> tuple[Outcome, Outcome]:
    """The outcome of the reader as it is, and of the previous one."""
    fast = outcome(path, ctx)
    with previous_reader():
        return fast, outcome(path, ctx)
