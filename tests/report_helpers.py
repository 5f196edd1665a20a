"""Test helpers for the report renderings: real report bodies from the SECOM/JPRS demo data,
and a real certificate whose subject is hostile markup.

The demo replays the incident: as of 2021-01-01 SECOM's issuance log lists the two
certificates of Mozilla bug 1695993 and JPRS's list does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from invsync.agent.exchange import envelope
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.model.findings import Finding
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    ReportVerification,
    Signer,
    SnapshotRef,
    build_report_body,
    parse_report_body,
    verify_report,
)
from invsync.agent.report.certificates import lookup_in
from invsync.agent.sources.registry import load_sources
from tests.paths import DEMO

AS_OF = datetime(2021, 1, 1, tzinfo=UTC)
OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
DV_BUG = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
ROOT_REF = SnapshotRef("secom", "root", 3, "ab" * 32)
SUB_REF = SnapshotRef("jprs", "subordinate", 7, "cd" * 32)

SECOM_LOG = load_sources([f"issuance-log:{DEMO / 'secom_issuance_log.jsonl'}"], AS_OF)
JPRS_LIST = load_sources([f"pem:{DEMO / 'jprs_ca_certificates.pem'}"], AS_OF)

# One key per signer, made once: key generation is the slow part of signing.
KEYS: dict[str, SigningKey] = {"exchange": generate(), "secom": generate(), "jprs": generate()}
_ROLES = {"exchange": "server", "secom": "root", "jprs": "subordinate"}


def demo_findings(at: datetime = AS_OF) -> tuple[Finding, ...]:
    """The real reconciliation of SECOM's issuance log against JPRS's list."""
    return reconcile(Side("secom", SECOM_LOG), Side("jprs", JPRS_LIST), at)


def signers() -> list[Signer]:
    return [
        Signer(_ROLES[name], name, key.keyid, key.public.spki_der) for name, key in KEYS.items()
    ]


def body_bytes(findings: Iterable[Finding], as_of: datetime = AS_OF) -> bytes:
    return build_report_body(
        pairing="secom-jprs",
        as_of=as_of,
        root=ROOT_REF,
        subordinate=SUB_REF,
        findings=findings,
        signers=signers(),
        certificates=lookup_in(SECOM_LOG, JPRS_LIST),
    )


def signed(body: bytes, *names: str) -> ReportVerification:
    """The verification of `body` signed by the named signers (the others absent)."""
    env = envelope.sign(REPORT_PAYLOAD_TYPE, body, [KEYS[name] for name in names])
    return verify_report(env)


def demo_body(at: datetime = AS_OF) -> ReportBody:
    return parse_report_body(body_bytes(demo_findings(at), at))


# --- a real certificate with a hostile subject ------------------------------------------------

SCRIPT_CN = "<script>alert(1)</script>"
IMG_O = '"><img src=x onerror=alert(2)>'


def hostile_record(issuer_key: ec.EllipticCurvePrivateKey | None = None) -> CertRecord:
    """A real CA certificate, signed with cryptography, whose subject is markup and script."""
    key = issuer_key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, SCRIPT_CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, IMG_O),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1695993)
        .not_valid_before(AS_OF - timedelta(days=30))
        .not_valid_after(AS_OF + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return CertRecord(parse_certificate(cert.public_bytes(Encoding.DER)), operator="jprs")


def hostile_findings(records: Sequence[CertRecord]) -> tuple[Finding, ...]:
    """Reconcile with the root listing `records` and the subordinate listing none of them."""
    return reconcile(Side("secom", list(records)), Side("jprs", []), AS_OF)
