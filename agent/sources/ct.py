"""Certificate Transparency (RFC 6962): the party's CA certificates found in a log.

A log holds mostly end-entity certificates of everyone. Of its entries, only the CA
certificates that one of the party's CA keys (`SourceContext.party_ca_spkis`) signed are kept,
and whether a key signed is decided by verifying the signature, never by the issuer name
(anyone can put "SECOM" in an issuer field). For an x509_entry the logged certificate is
checked; for a precert_entry the signed pre-certificate from extra_data, kept with the source
kind `ct-precert` (its SHA-256 differs from the final certificate's; its TBS hash links them).

Entries are read from files here (`load_ct_entries`) and from a live log in
`agent.sources.ct_client`; both name an entry `<file or log URL>#<entry index>`. A malformed
entry is a SourceError naming it, or, with `skip_invalid`, a `Skipped` entry.

Nearly every entry of a log is dropped, so nothing is built for an entry until it may be kept
(`agent.sources.ct_fast`): its structure is checked by offsets, its certificate loaded (what
`cryptography` refuses is malformed), and its extensions read only when its bytes say it may
be a CA. Plain JSON Lines are cut by `agent.sources.ct_lines`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import DECODE_ERRORS, CertRecord, SourceRef, parse_certificate
from invsync.agent.model.signatures import signed_by
from invsync.agent.sources.ct_entries import EntryError
from invsync.agent.sources.ct_fast import entry_certificate, may_be_ca
from invsync.agent.sources.ct_lines import PlainLines
from invsync.agent.sources.reading import open_lines, read_text

CT = "ct"
CT_PRECERT = "ct-precert"


def load_ct_entries(path: Path, ctx: SourceContext) -> Facts:
    """The party's CA certificates in a file holding one get-entries response (JSON), or a JSON
    Lines file of them. Entries are numbered from 0 across the whole file.

    JSON Lines are read line by line, twice: first for the total that progress reports (which
    also refuses a malformed line before any entry is decoded), then for the entries, one
    response at a time. A single document is read whole: `json` cannot parse it in pieces."""
    keys = party_keys(ctx, str(path))
    entries = _single_response(path)
    if entries is not None:
        return _responses_facts([entries], len(entries), str(path), keys, ctx)
    total = sum(map(len, _line_responses(path)))  # each response dropped once counted
    return _responses_facts(_line_responses(path), total, str(path), keys, ctx)


def _responses_facts(
    responses: Iterable[list[object]],
    total: int,
    source: str,
    keys: Sequence[PublicKeyTypes],
    ctx: SourceContext,
) -> Facts:
    # Only what each response yields is kept, not a Facts per response: a file of many small
    # responses must not cost more than its records.
    records: list[CertRecord] = []
    skipped: list[Skipped] = []
    done = 0
    for entries in responses:
        facts = entries_facts(entries, source, done, keys, ctx)
        records.extend(facts.records)
        skipped.extend(facts.skipped)
        done += len(entries)
        # Dropped before the next response is parsed (the loop would drop it after), so that
        # its freed memory is reused for the next rather than taken anew from the system.
        del entries
        ctx.progress(done, total)
    return Facts(records=tuple(records), skipped=tuple(skipped))


def party_keys(ctx: SourceContext, source: str) -> list[PublicKeyTypes]:
    """The party's CA public keys; without any, no entry could ever be kept, so that is refused
    rather than returning an empty result that looks like a clean log."""
    if not ctx.party_ca_spkis:
        raise SourceError(f"{source}: no party CA keys to select CT entries by")
    keys: list[PublicKeyTypes] = []
    for number, spki in enumerate(ctx.party_ca_spkis, 1):
        try:
            keys.append(serialization.load_der_public_key(spki))
        except (ValueError, TypeError) as e:
            raise SourceError(f"{source}: party CA key {number} cannot be loaded: {e}") from e
    return keys


def response_entries(body: object, where: str) -> list[object]:
    """The `entries` list of a decoded get-entries response."""
    if not isinstance(body, dict) or not isinstance(body.get("entries"), list):
        expected = '{"entries": [...]}'
        raise SourceError(f"{where}: not a get-entries response (expected {expected})")
    entries: list[object] = body["entries"]
    return entries


def entries_facts(
    entries: Sequence[object],
    source: str,
    first_index: int,
    keys: Sequence[PublicKeyTypes],
    ctx: SourceContext,
) -> Facts:
    """The records of the entries the party's keys signed; entry i is `source#(first_index+i)`."""
    records: list[CertRecord] = []
    skipped: list[Skipped] = []
    for index, entry in enumerate(entries, first_index):
        try:
            record = _entry_record(entry, source, index, keys, ctx.now)
        except EntryError as e:
            if not ctx.skip_invalid:
                raise SourceError(f"{source}#{index}: {e}") from e
            skipped.append(Skipped(f"{source}#{index}", str(e)))
            continue
        if record is not None:
            records.append(record)
    return Facts(records=tuple(records), skipped=tuple(skipped))


def _entry_record(
    raw: object, source: str, index: int, keys: Sequence[PublicKeyTypes], now: datetime
) -> CertRecord | None:
    # Nearly every entry of a real log is dropped here, so nothing is built for one before it
    # can be a CA (agent.sources.ct_fast), not even its location.
    precert, der = entry_certificate(raw)
    try:
        # Loaded whatever it is, so that bytes cryptography refuses are refused as before; its
        # extensions (Python objects, SCTs and all) only when the bytes say it may be a CA.
        cert = x509.load_der_x509_certificate(der)
        if not may_be_ca(der) or not _is_ca(cert) or not any(signed_by(cert, k) for k in keys):
            return None
        info = parse_certificate(der)
    except DECODE_ERRORS as e:  # also what the lazy extension accessors raise, and unknown keys
        what = "pre-certificate" if precert else "certificate"
        raise EntryError(f"{what} cannot be parsed: {e}") from e
    kind = CT_PRECERT if precert else CT
    return CertRecord(info, sources=(SourceRef(kind, f"{source}#{index}", now, now),))


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _single_response(path: Path) -> list[object] | None:
    """The entries of the file's one get-entries response; None when the file is JSON Lines:
    its first non-blank line is JSON by itself and another non-blank line follows (the whole
    cannot be one document then)."""
    with open_lines(path) as lines:
        filled = ((number, line) for number, line in lines if line.strip())
        first = next(filled, None)
        if first is None:
            raise SourceError(f"{path}: no get-entries response found (the file is empty)")
        try:
            document = json.loads(first[1])
        except (json.JSONDecodeError, RecursionError):
            document = _SPREAD
        else:
            if next(filled, None) is not None:
                return None
    if document is _SPREAD:  # pretty-printed, or not JSON: the whole text decides
        return _whole_response(path)
    return response_entries(document, str(path))


_SPREAD = object()
"""A first line that is not JSON by itself: a document spread over lines, or none at all."""


def _whole_response(path: Path) -> list[object] | None:
    """The entries of the file read as one JSON document (any layout); None when it is not one
    but has several lines, which are then read as JSON Lines (whose first bad line is the
    error)."""
    text = read_text(path)
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        if sum(1 for line in text.splitlines() if line.strip()) > 1:
            return None
        raise SourceError(f"{path}: invalid JSON: {_json_problem(e)}") from e
    return response_entries(document, str(path))


def _line_responses(path: Path) -> Iterator[list[object]]:
    """The `entries` of each non-blank line's get-entries response, named `path:line`: plain
    lines the fast way (agent.sources.ct_lines), from the first other one on the exact way."""
    plain = PlainLines(path)
    yield from plain.responses()
    if plain.complete:
        return
    with open_lines(path) as lines:
        for number, line in islice(lines, plain.count, None):
            if line.strip():
                where = f"{path}:{number}"
                yield response_entries(_json_line(line, where), where)


def _json_line(line: str, where: str) -> object:
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError) as e:
        raise SourceError(f"{where}: invalid JSON: {_json_problem(e)}") from e


def _json_problem(e: json.JSONDecodeError | RecursionError) -> str:
    # Python's decoder recurses once per nesting level: a hostile file nests past the limit.
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return f"{e.msg} at column {e.colno}"
