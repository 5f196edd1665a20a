"""The issuance log: JSON Lines exported from the CA system, one issued certificate a line.

"The list of CA certificates it issued, extracted from its logs" (DESIGN §1). Each line is
`{"certificate": ..., "operator": ..., "lifecycle": ..., "revoked_at": ..., "revocation_reason":
...}`; only `certificate` is required. The import is all or nothing: a bad line is a SourceError
naming `path:line`, and nothing of the file is returned. The file is read as its lines are used
(`reading.open_lines`), so a large log costs its records, not its size. The CSV form (`csv_log`)
reads its rows with the same `log_record`, so both forms accept and refuse exactly the same
values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.der import base64_bytes
from invsync.agent.model.record import (
    LIFECYCLES,
    REVOCATION_REASONS,
    CertInfo,
    CertRecord,
    Revocation,
    SourceRef,
    parse_certificate,
)
from invsync.agent.sources.detect import ISSUANCE_LOG
from invsync.agent.sources.pem import pem_certificates
from invsync.agent.sources.reading import open_lines
from invsync.agent.sources.tabular import Tally, collect

FIELDS = ("certificate", "operator", "lifecycle", "revoked_at", "revocation_reason")

Located = tuple[str, str]
"""A line of the log with its `path:line`."""

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?(?P<tz>[Zz]|[+-]\d{2}:\d{2})?$"
)


def _squash(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


# "key-compromise", "key_compromise" and "keyCompromise" all name ReasonFlags.key_compromise.
_REASONS = {_squash(reason): reason for reason in REVOCATION_REASONS}


def load_issuance_log(path: Path, now: datetime) -> list[CertRecord]:
    """Every line of a JSON Lines issuance log as a record; blank lines are skipped."""
    return list(load_issuance_log_facts(path, SourceContext(now=now)).records)


def load_issuance_log_facts(path: Path, ctx: SourceContext) -> Facts:
    """As `load_issuance_log`; with `ctx.skip_invalid` a bad line is skipped and reported."""
    tally = Tally(ctx.progress)
    with open_lines(path) as lines:
        entries = _entries(path, lines)
        records, skipped = collect(entries, lambda e: _record(e[1], e[0], ctx.now), ctx, tally)
    if tally.done == 0:
        raise SourceError(f"{path}: no certificate found (the issuance log has no entries)")
    tally.finish()
    return Facts(records=tuple(records), skipped=tuple(skipped))


def _entries(path: Path, lines: Iterable[tuple[int, str]]) -> Iterator[tuple[str, Located]]:
    """Each non-blank line as (location, (location, line)): what `collect` takes."""
    for number, line in lines:
        if line.strip():
            location = f"{path}:{number}"
            yield location, (location, line)


def normalize_reason(name: str) -> str | None:
    """The ReasonFlags value a reason name spells (camel, kebab or snake case), or None."""
    return _REASONS.get(_squash(name))


def _record(line: str, location: str, now: datetime) -> CertRecord:
    return log_record(_json_object(line, location), location, now)


def log_record(entry: Mapping[str, Any], location: str, now: datetime) -> CertRecord:
    """The record of one log entry, JSON Lines or CSV: `entry` maps FIELDS to their values,
    an absent or empty one meaning not given. Errors are SourceErrors naming `location`."""
    return CertRecord(
        _certificate(entry, location),
        operator=_optional_str(entry, "operator", location),
        lifecycle=_lifecycle(entry, location),
        revocation=_revocation(entry, location),
        sources=(SourceRef(ISSUANCE_LOG, location, now, now),),
    )


def _json_object(line: str, location: str) -> dict[str, Any]:
    try:
        entry = json.loads(line, object_pairs_hook=lambda pairs: _no_duplicates(pairs, location))
    except json.JSONDecodeError as e:
        raise SourceError(f"{location}: invalid JSON: {e.msg} at column {e.colno}") from e
    if not isinstance(entry, dict):
        raise SourceError(f"{location}: expected a JSON object, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise SourceError(f"{location}: unknown field {names} (known: {', '.join(FIELDS)})")
    return entry


def _no_duplicates(pairs: list[tuple[str, Any]], location: str) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys and silently drop the other value.
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise SourceError(f"{location}: field {key!r} appears twice")
    return dict(pairs)


def _optional_str(entry: Mapping[str, Any], name: str, location: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise SourceError(f"{location}: {name} must be a string, got {type(value).__name__}")
    return value or None


def _certificate(entry: Mapping[str, Any], location: str) -> CertInfo:
    value = _optional_str(entry, "certificate", location)
    if value is None:
        raise SourceError(f"{location}: missing required field 'certificate'")
    if "-----BEGIN" in value:
        return _pem_certificate(value, location)
    der = base64_bytes(
        "".join(value.split()), location, "certificate is neither PEM nor base64 DER"
    )
    try:
        return parse_certificate(der)
    except ValueError as e:
        raise SourceError(f"{location}: certificate cannot be parsed: {e}") from e


def _pem_certificate(text: str, location: str) -> CertInfo:
    infos = pem_certificates(text, lambda _line: location)
    if len(infos) != 1:
        raise SourceError(f"{location}: certificate holds {len(infos)} PEM certificates, not 1")
    return infos[0]


def _lifecycle(entry: Mapping[str, Any], location: str) -> str | None:
    value = _optional_str(entry, "lifecycle", location)
    if value is not None and value not in LIFECYCLES:
        raise SourceError(f"{location}: lifecycle {value!r} is not one of {', '.join(LIFECYCLES)}")
    return value


def _revocation(entry: Mapping[str, Any], location: str) -> Revocation | None:
    revoked_at = _optional_str(entry, "revoked_at", location)
    reason = _reason(entry, location)
    if revoked_at is None:
        if reason:
            raise SourceError(f"{location}: revocation_reason given without revoked_at")
        return None
    at = _rfc3339(revoked_at, location)
    return Revocation(at, reason, f"{ISSUANCE_LOG}:{location}")


def _reason(entry: Mapping[str, Any], location: str) -> str:
    value = _optional_str(entry, "revocation_reason", location)
    if value is None:
        return ""
    reason = normalize_reason(value)
    if reason is None:
        raise SourceError(
            f"{location}: revocation_reason {value!r} is not an RFC 5280 reason"
            f" (one of {', '.join(REVOCATION_REASONS)})"
        )
    return reason


def _rfc3339(value: str, location: str) -> datetime:
    match = _RFC3339.match(value)
    if match is None:
        raise SourceError(
            f"{location}: revoked_at {value!r} is not an RFC 3339 time like 2021-03-09T00:00:00Z"
        )
    if match.group("tz") is None:
        raise SourceError(f"{location}: revoked_at {value!r} has no timezone (add Z or +09:00)")
    try:
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except ValueError as e:  # well-formed but impossible, such as month 13
        raise SourceError(f"{location}: revoked_at {value!r} is not a valid time: {e}") from e
