"""Test helpers: the real SECOM/JPRS certificates, and RFC 6962 entries encoded from them.

The encoder lives here, apart from the decoder in `agent.sources.ct_entries`, so that the tests
check the decoder against an independent reading of RFC 6962 §3.4 and §4.6.
"""

from __future__ import annotations

import base64
import hashlib
import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from invsync.agent.model.record import sha256_hex
from tests.paths import SECOM_JPRS

FIXTURES = SECOM_JPRS
BUG_OV = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
# CCADB's fingerprints of the 16 CA certificates SECOM's roots issued to JPRS.
JPRS_SHA256 = {
    "04C1871C68607515389FA3B0CFB83DBE6A4AF05E8C80E745702969F240606E36",
    "11A27671872265445CB7258EB2844EE614D14777B9F6F73BE9532122F21FAD0D",
    "1B901D550A5A51F6737279C6021445F051BD293015612A5BAA3F8588829EE69A",
    BUG_OV,
    "27E093E883607E4E0E0BB1EBABAE2C9C0E55A9CF020373BFA234FE05FE0BA743",
    "52361A6ABC835E7AD4B375F2165055303169DDE9FBEB4FAAF588ED532DDC2DCB",
    "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4",
    "801C522D3AD138E4F05D467EA369C1CC276078BF284018D0525EBBBC5342C836",
    "90EE548EBACACAB40207A61A378CE186B94D24AE7C55BFC83065EA96072E2B38",
    "927E9BFC0D75C3146070C3F3AFDD4A2C10F765289124997CC52CFD1209E763CB",
    "9C280369D072F89D9C9B62640BBF2F28D2F30ECEE9759854031D5C5C53E8D1B6",
    "C3F908A79CDD80C13025CB5323B111AC79099EB80122F999DBB22F1AA1662DDC",
    "DAFA254E0173F0FD793A92ECFDF2C72C53EA5A761A73B7A3394C49182EA90933",
    "DB2F0194EDCB78CBA9D1BAF4C3DBA8D56837D97B20233D617DD50B713BD313C8",
    "F19D55CD08A3EA42BD91508073823174DD92370213C177F82531756DA7508A51",
    "F77CE159D3888EA2BCC35DD46472CED8CC33007E0DA6C89139CD3A270D890033",
}
# The four JPRS CAs of 2024 are under SECOM's newer roots; the other twelve under RootCA2.
JPRS_2024 = {
    "1B901D550A5A51F6737279C6021445F051BD293015612A5BAA3F8588829EE69A",
    "52361A6ABC835E7AD4B375F2165055303169DDE9FBEB4FAAF588ED532DDC2DCB",
    "9C280369D072F89D9C9B62640BBF2F28D2F30ECEE9759854031D5C5C53E8D1B6",
    "DAFA254E0173F0FD793A92ECFDF2C72C53EA5A761A73B7A3394C49182EA90933",
}


def certificates(name: str) -> list[x509.Certificate]:
    with warnings.catch_warnings():  # three SECOM roots have serial 0 (see agent/model/record.py)
        warnings.filterwarnings("ignore", "Parsed a serial number")
        return x509.load_pem_x509_certificates((FIXTURES / name).read_bytes())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


ROOTS = certificates("secom_roots_selfsigned.pem")
HIERARCHY = certificates("secom_hierarchy_all_ccadb.pem")
JPRS = certificates("jprs_intermediates_all_generations.pem")
SECOM_KEYS = [spki(r.public_key()) for r in ROOTS]
ROOT_CA2 = next(r for r in ROOTS if "Security Communication RootCA2" in r.subject.rfc4514_string())
ROOT_CA2_SPKI = spki(ROOT_CA2.public_key())
BUG_OV_CERT = next(c for c in JPRS if sha256_hex(der(c)) == BUG_OV)

# RFC 6962 encoding.
X509_ENTRY = 0
PRECERT_ENTRY = 1
TIMESTAMP_MS = 1_594_339_200_000  # 2020-07-10T00:00:00Z, the day the bug's certificates were issued


def uint(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def vector(data: bytes, length_bytes: int) -> bytes:
    """A TLS opaque vector: a big-endian length of `length_bytes` bytes, then the data."""
    return uint(len(data), length_bytes) + data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def leaf_header(entry_type: int, *, version: int = 0, leaf_type: int = 0) -> bytes:
    """MerkleTreeLeaf up to the signed entry: version, leaf_type, timestamp, entry_type."""
    return uint(version, 1) + uint(leaf_type, 1) + uint(TIMESTAMP_MS, 8) + uint(entry_type, 2)


def chain(certificates: Sequence[bytes]) -> bytes:
    """`ASN.1Cert certificate_chain<0..2^24-1>`: a u24 total, then u24-prefixed certificates."""
    return vector(b"".join(vector(der, 3) for der in certificates), 3)


def x509_leaf(certificate: bytes) -> bytes:
    return leaf_header(X509_ENTRY) + vector(certificate, 3) + vector(b"", 2)


def precert_leaf(tbs: bytes, issuer_spki: bytes) -> bytes:
    issuer_key_hash = hashlib.sha256(issuer_spki).digest()
    return leaf_header(PRECERT_ENTRY) + issuer_key_hash + vector(tbs, 3) + vector(b"", 2)


def x509_entry(certificate: bytes, issuers: Sequence[bytes] = ()) -> dict[str, str]:
    return {"leaf_input": b64(x509_leaf(certificate)), "extra_data": b64(chain(issuers))}


def precert_entry(
    precertificate: bytes, tbs: bytes, issuer_spki: bytes, issuers: Sequence[bytes] = ()
) -> dict[str, str]:
    """A precert_entry: the leaf holds the TBSCertificate, extra_data the PrecertChainEntry."""
    extra = vector(precertificate, 3) + chain(issuers)
    return {"leaf_input": b64(precert_leaf(tbs, issuer_spki)), "extra_data": b64(extra)}


def bug_ov_precert_entry() -> dict[str, str]:
    """A precert_entry whose pre-certificate is the real BUG_OV certificate, as RootCA2 signed
    it (a real pre-certificate of a CA certificate would carry the poison extension)."""
    return precert_entry(der(BUG_OV_CERT), BUG_OV_CERT.tbs_certificate_bytes, ROOT_CA2_SPKI)
