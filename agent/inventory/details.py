"""Every field of a record, for `invsync inventory show` and JSON exports: plain data only."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from invsync.agent.model.record import CertRecord
from invsync.agent.times import rfc3339


def record_details(record: CertRecord) -> dict[str, Any]:
    info = record.info
    return {
        "sha256": info.sha256,
        "subject": info.subject,
        "issuer": info.issuer,
        "serial": info.serial_hex,
        "serial_bytes": info.serial_bytes,
        "not_before": rfc3339(info.not_before),
        "not_after": rfc3339(info.not_after),
        "is_ca": info.is_ca,
        "path_len": info.path_len,
        "ekus": list(info.ekus),
        "technically_constrained": info.technically_constrained,
        "name_constraints": info.has_name_constraints,
        "subject_key_id": info.ski,
        "authority_key_id": info.aki,
        "spki_sha256": info.spki_sha256,
        "doppelganger_key": info.doppelganger_key,
        "tbs_sha256": info.tbs_sha256,
        "crl_urls": list(info.crl_urls),
        "operator": record.operator,
        "attribution": record.attribution or "unattributed",
        "lifecycle": record.lifecycle,
        "revocation": _plain(record.revocation),
        "revocation_evidence": [_plain(r) for r in record.revocation_evidence],
        "disclosure": _plain(record.disclosure),
        "audit_scope": [_plain(a) for a in record.audit_scope],
        "sources": [_plain(s) for s in record.sources],
    }


def _plain(value: Any) -> Any:
    if value is None:
        return None
    return _jsonable(asdict(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
