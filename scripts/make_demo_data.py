"""Regenerate agent/demo_data/ from the real SECOM/JPRS certificates in tests/fixtures.

The demo replays early 2021, before Mozilla bug 1695993 was found: SECOM's issuance log holds
the CA certificates its roots issued to JPRS up to 2020-07-22; JPRS's list holds the ones it
used, without the two issued on the morning of 2020-07-10. For a third party joining the
federation (docs/operations.md 2.8), SECOM's issuance records of the CA certificates its roots
issued to NII up to the same date, and NII's own list of them. Run from the project root:

    .venv/bin/python scripts/make_demo_data.py
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

FIXTURES = Path("tests/fixtures/secom_jprs")
OUT = Path("agent/demo_data")
CUTOFF = datetime(2020, 7, 23, tzinfo=UTC)
NII_O = "National Institute of Informatics"
NEVER_USED = {  # the two certificates of bug 1695993
    "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62",
    "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4",
}


def main() -> None:
    certs = x509.load_pem_x509_certificates(
        (FIXTURES / "jprs_intermediates_all_generations.pem").read_bytes()
    )
    issued = sorted(
        (c for c in certs if c.not_valid_before_utc < CUTOFF), key=lambda c: c.not_valid_before_utc
    )
    OUT.mkdir(exist_ok=True)
    with (OUT / "secom_issuance_log.jsonl").open("w") as log:
        for cert in issued:
            log.write(json.dumps({"certificate": _pem(cert), "operator": "jprs"}) + "\n")
    used = [c for c in issued if _fingerprint(c) not in NEVER_USED]
    (OUT / "jprs_ca_certificates.pem").write_text("".join(_pem(c) for c in used))
    # JPRS's audit scope was its own list: the two unused certificates were left out of it.
    scope = "".join(f"{_fingerprint(c)}\n" for c in used)
    (OUT / "jprs_audit_scope_webtrust_br_2020.txt").write_text(
        "CA certificates in scope of JPRS's WebTrust BR audit, 2019-10-30 to 2020-10-29\n" + scope
    )
    roots = (FIXTURES / "secom_roots_selfsigned.pem").read_text()
    (OUT / "secom_roots.pem").write_text(roots)
    nii = _nii()
    print(f"{len(issued)} issued, {len(used)} used by JPRS; {len(nii)} issued to NII")


def _nii() -> list[x509.Certificate]:
    """SECOM's certificates to NII before the cutoff: in SECOM's records and NII's list alike."""
    with warnings.catch_warnings():  # one SECOM certificate of the 185 has a negative serial
        warnings.filterwarnings("ignore", "Parsed a serial number")
        certs = x509.load_pem_x509_certificates(
            (FIXTURES / "secom_hierarchy_all_ccadb.pem").read_bytes()
        )
    nii = sorted(
        (c for c in certs if c.not_valid_before_utc < CUTOFF and NII_O in _organizations(c)),
        key=lambda c: c.not_valid_before_utc,
    )
    with (OUT / "secom_issuance_log_nii.jsonl").open("w") as log:
        for cert in nii:
            log.write(json.dumps({"certificate": _pem(cert), "operator": "nii"}) + "\n")
    (OUT / "nii_ca_certificates.pem").write_text("".join(_pem(c) for c in nii))
    return nii


def _organizations(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex().upper()


if __name__ == "__main__":
    main()
