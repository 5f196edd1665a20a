"""Golden rule cases: both sides of a pairing as data, on the real SECOM/JPRS certificates.

A case file (tests/golden/*.json) names certificates by SHA-256 only; their DER comes from
tests/fixtures/secom_jprs/ and agent/demo_data/. Each side goes through the same assembly an
inventory does (agent.inventory.assemble): CCADB disclosures and audit scope entries attach by
SHA-256, CRL entries by issuer key and serial, checked by signature against SECOM's real roots.

    {
      "description": "...", "at": "2021-01-01T00:00:00Z",
      "audits": {"NAME": {"kind": "WebTrust BR", "start": "2019-10-30", "end": "2020-10-29"}},
      "root": SIDE, "subordinate": SIDE,
      "break_rule": "CODE",          optional: that rule's check raises (rule-crashed)
      "expected": [{"code": "...", "sha256": "...", "party": "...", "due": "...", ...}]
    }
    SIDE = {"party": "secom", "records": [RECORD...], "previous": [RECORD...],
            "header": {"issued_at": T, "expires_at": T, "version": 1,
                       "profiles": [{"operator": "jprs", "serial_bytes": 16, ...}],
                       "log_checkpoint": "NOTE"},
            "max_age_days": 7}
    RECORD = {"sha256": "...", "operator": "jprs", "attribution": "issuance-log",
              "lifecycle": "unused",
              "revoked": {"at": T, "reason": "superseded"},
              "crl": {"at": T, "reason": "superseded", "source": "crl:SCRoot2CRL.crl"},
              "audits": ["NAME"], "disclosure": "ccadb" | DISCLOSURE}

`"disclosure": "ccadb"` takes the certificate's real row of CCADB's V5 report
(tests/fixtures/ccadb/); an object spells one out (`revocation_status`, `revocation_date`,
`revocation_reason`, `technically_constrained`, `audits`: [{"kind", "start", "end"}]).
An `expected` entry must hold `code` and `sha256` ("" for a finding about no certificate);
any other key it holds (party, severity, policy, due) must match the finding too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.inventory.assemble import assemble
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import (
    AuditPeriod,
    AuditScopeEntry,
    CcadbAudit,
    CrlRevocation,
    Disclosure,
)
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertInfo, CertRecord, Revocation, parse_certificate
from invsync.agent.model.signatures import signed_by
from invsync.agent.model.snapshot import ROOT, SUBORDINATE, Side, SnapshotHeader
from invsync.agent.sources.ccadb import load_ccadb_records
from tests.paths import DEMO, FIXTURES, SECOM_JPRS

GOLDEN = Path(__file__).resolve().parent / "golden"
CERTIFICATES = (
    *sorted(SECOM_JPRS.glob("**/*.pem")),
    DEMO / "jprs_ca_certificates.pem",
    DEMO / "secom_roots.pem",
)
CCADB_V5 = FIXTURES / "ccadb" / "AllCertificateRecordsCSVFormatV5_SECOM_JPRS_rows.csv"

Json = Mapping[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    at: datetime
    root: Side
    sub: Side
    break_rule: str
    expected: tuple[Json, ...]


@cache
def certificates() -> dict[str, CertInfo]:
    """Every real certificate the cases may name, by SHA-256."""
    found: dict[str, CertInfo] = {}
    for path in CERTIFICATES:
        for cert in x509.load_pem_x509_certificates(path.read_bytes()):
            info = parse_certificate(cert.public_bytes(Encoding.DER))
            found[info.sha256] = info
    return found


@cache
def roots() -> tuple[CertInfo, ...]:
    return tuple(info for info in certificates().values() if info.self_issued)


@cache
def ccadb_rows() -> dict[str, Disclosure]:
    facts = load_ccadb_records(CCADB_V5, SourceContext(now=datetime.now(UTC)))
    return {d.sha256: d for d in facts.disclosures}


def load(path: Path) -> Case:
    data = json.loads(path.read_text())
    audits = {name: _audit(spec) for name, spec in data.get("audits", {}).items()}
    return Case(
        name=path.stem,
        description=data["description"],
        at=_time(data["at"]),
        root=_side(data["root"], ROOT, audits),
        sub=_side(data["subordinate"], SUBORDINATE, audits),
        break_rule=data.get("break_rule", ""),
        expected=tuple(data["expected"]),
    )


def _side(spec: Json, role: str, audits: Mapping[str, AuditPeriod]) -> Side:
    previous = spec.get("previous")
    max_age = spec.get("max_age_days")
    return Side(
        spec["party"],
        _records(spec["records"], audits),
        header=_header(spec["party"], role, spec["header"]) if "header" in spec else None,
        previous=None if previous is None else tuple(_records(previous, audits)),
        max_age=None if max_age is None else timedelta(days=max_age),
    )


def _records(specs: Sequence[Json], audits: Mapping[str, AuditPeriod]) -> list[CertRecord]:
    """The records as an inventory holds them: assembled with their facts."""
    facts = Facts(
        records=tuple(_record(spec) for spec in specs),
        disclosures=tuple(_disclosure(s) for s in specs if "disclosure" in s),
        audit_scope=tuple(
            AuditScopeEntry(spec["sha256"], audits[name], f"golden:{name}")
            for spec in specs
            for name in spec.get("audits", ())
        ),
        crl_revocations=tuple(_crl_entry(spec) for spec in specs if "crl" in spec),
    )
    assembled = assemble(facts, issuers=roots())
    assert not assembled.unmatched_crl_entries, "a CRL entry's issuer is not a SECOM root"
    return assembled.records


def _record(spec: Json) -> CertRecord:
    revoked = spec.get("revoked")
    revocation = (
        Revocation(_time(revoked["at"]), revoked.get("reason", ""), "issuance-log:golden")
        if revoked
        else None
    )
    return CertRecord(
        certificates()[spec["sha256"]],
        operator=spec.get("operator"),
        lifecycle=spec.get("lifecycle"),
        revocation=revocation,
        attribution=spec.get("attribution", ""),
    )


def _crl_entry(spec: Json) -> CrlRevocation:
    info = certificates()[spec["sha256"]]
    cert = x509.load_der_x509_certificate(info.der)
    (issuer,) = [
        root
        for root in roots()
        if signed_by(cert, x509.load_der_x509_certificate(root.der).public_key())
    ]
    crl = spec["crl"]
    return CrlRevocation(
        issuer_spki_sha256=issuer.spki_sha256,
        serial_hex=info.serial_hex,
        revoked_at=_time(crl["at"]),
        reason=crl.get("reason", ""),
        source=crl["source"],
        crl_signature_hash="sha256",
    )


def _disclosure(spec: Json) -> Disclosure:
    given = spec["disclosure"]
    if given == "ccadb":
        return ccadb_rows()[spec["sha256"]]
    return Disclosure(
        sha256=spec["sha256"],
        source="golden",
        ca_owner="SECOM Trust Systems Co. Ltd.",
        subordinate_ca_owner="Japan Registry Services Co. Ltd.",
        record_type="Intermediate Certificate",
        revocation_status=given.get("revocation_status", "Not Revoked"),
        revocation_date=_date(given.get("revocation_date")),
        revocation_reason=given.get("revocation_reason", ""),
        technically_constrained=given.get("technically_constrained", False),
        derived_trust_bits=("Server Authentication",),
        audits=tuple(
            CcadbAudit(a["kind"], "", "WebTrust", None, _date(a["start"]), _date(a["end"]))
            for a in given.get("audits", ())
        ),
    )


def _header(party: str, role: str, spec: Json) -> SnapshotHeader:
    return SnapshotHeader(
        party=party,
        pairing="secom-jprs",
        role=role,
        version=spec.get("version", 1),
        issued_at=_time(spec["issued_at"]),
        expires_at=_time(spec["expires_at"]),
        previous_digest=b"",
        record_count=0,
        records_digest=b"",
        scope_issuer_spki=(),
        profiles=tuple(
            OperatorProfile(
                operator=p["operator"],
                serial_bytes=p.get("serial_bytes"),
                allowed_ekus=tuple(p.get("allowed_ekus", ())),
                max_validity_days=p.get("max_validity_days"),
                effective_from=_time(p["effective_from"]) if "effective_from" in p else None,
                effective_until=_time(p["effective_until"]) if "effective_until" in p else None,
            )
            for p in spec.get("profiles", ())
        ),
        log_checkpoint=spec.get("log_checkpoint", "").encode(),
    )


def _audit(spec: Json) -> AuditPeriod:
    return AuditPeriod(spec["kind"], _date(spec["start"]), _date(spec["end"]))


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)
