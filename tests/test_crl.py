"""CRLs: every real CRL of tests/fixtures/crls/ verifies with its issuer and yields its entries.

CRL_INDEX.csv (from the shared data set) was computed independently of this reader: it gives each
CRL's entry count and signature hash. The literal serials, dates and reason counts below were read
with `openssl crl -text`.
"""

from __future__ import annotations

import base64
import csv
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import CrlRevocation, Skipped
from invsync.agent.model.record import CertInfo, parse_certificate
from invsync.agent.sources.crl import load_crl
from tests.paths import FIXTURES

CRLS = FIXTURES / "crls"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
XRAMP = "CN=XRamp Global Certification Authority,O=XRamp Security Services Inc"
XRAMP_NAME = XRAMP + ",OU=www.xrampsecurity.com,C=US"


def _index() -> list[dict[str, str]]:
    with (CRLS / "CRL_INDEX.csv").open(newline="") as f:
        return list(csv.DictReader(f))


INDEX = _index()


def _crl_path(row: dict[str, str]) -> Path:
    return CRLS / Path(row["file"]).name


def _issuer(name: str) -> CertInfo:
    """The issuer certificate beside a CRL: N.pem for N.crl, eid2011.pem (copied from CCADB)."""
    cert = x509.load_pem_x509_certificate((CRLS / name).read_bytes())
    return parse_certificate(cert.public_bytes(serialization.Encoding.DER))


def _ctx(*issuers: CertInfo, skip_invalid: bool = False) -> SourceContext:
    return SourceContext(now=NOW, issuers=issuers, skip_invalid=skip_invalid)


def _load(crl: str, *issuers: str) -> Facts:
    return load_crl(CRLS / crl, _ctx(*(_issuer(name) for name in issuers)))


def _fails(path: Path, ctx: SourceContext, message: str) -> None:
    with pytest.raises(SourceError, match="^" + re.escape(message)):
        load_crl(path, ctx)


@pytest.mark.parametrize("row", INDEX, ids=[Path(row["file"]).name for row in INDEX])
def test_every_real_crl_verifies_and_yields_the_indexed_entries(row: dict[str, str]) -> None:
    path = _crl_path(row)
    issuer = _issuer(path.with_suffix(".pem").name)
    facts = load_crl(path, _ctx(issuer))
    count = int(row["revoked_entries"])
    assert len(facts.crl_revocations) == count
    assert facts.skipped == ()
    assert {r.issuer_spki_sha256 for r in facts.crl_revocations} <= {issuer.spki_sha256}
    assert {r.crl_signature_hash for r in facts.crl_revocations} <= {row["sig_hash"]}
    sources = [r.source for r in facts.crl_revocations]
    assert sources == [f"crl:{path}#{n}" for n in range(1, count + 1)]


def test_the_index_holds_18_sha1_crls_that_cryptography_alone_would_refuse() -> None:
    # Why the reader verifies signatures itself: is_signature_valid() says False for these.
    sha1 = [row for row in INDEX if row["sig_hash"] == "sha1"]
    assert len(sha1) == 18
    for row in sha1:
        crl = x509.load_der_x509_crl(_crl_path(row).read_bytes())
        issuer = x509.load_pem_x509_certificate(_crl_path(row).with_suffix(".pem").read_bytes())
        key = issuer.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        assert not crl.is_signature_valid(key)


def test_sha1_crls_are_accepted_and_their_entries_marked_sha1() -> None:
    facts = _load("5.crl", "5.pem")
    assert len(facts.crl_revocations) == 304
    assert {r.crl_signature_hash for r in facts.crl_revocations} == {"sha1"}
    first = facts.crl_revocations[0]
    assert first.serial_hex == "40388FB9"
    assert first.revoked_at == datetime(2007, 10, 25, 21, 52, 5, tzinfo=UTC)
    assert first.reason == ""
    assert first.issuer_spki_sha256 == _issuer("5.pem").spki_sha256


def test_eid2011_all_15752_entries_with_their_reasons() -> None:
    facts = _load("eid2011.crl", "eid2011.pem")
    revocations = facts.crl_revocations
    assert len(revocations) == 15752
    assert {r.crl_signature_hash for r in revocations} == {"sha256"}
    assert Counter(r.reason for r in revocations) == {
        "unspecified": 14777,
        "certificateHold": 911,
        "superseded": 46,
        "keyCompromise": 18,
    }
    assert revocations[0] == CrlRevocation(
        issuer_spki_sha256=_issuer("eid2011.pem").spki_sha256,
        serial_hex="16E4B94EA2EAADD74DCD4070FC5EC340",
        revoked_at=datetime(2011, 5, 16, 23, 10, 32, tzinfo=UTC),
        reason="superseded",
        source=f"crl:{CRLS / 'eid2011.crl'}#1",
        crl_signature_hash="sha256",
    )


def test_progress_is_reported_every_1000_entries_and_at_the_end() -> None:
    calls: list[tuple[int, int | None]] = []
    ctx = SourceContext(
        now=NOW,
        issuers=[_issuer("eid2011.pem")],
        progress=lambda done, total: calls.append((done, total)),
    )
    load_crl(CRLS / "eid2011.crl", ctx)
    assert calls == [(n * 1000, 15752) for n in range(1, 16)] + [(15752, 15752)]


def test_serial_is_spelled_as_the_revoked_certificates_serial_hex() -> None:
    # SecureTrust CA revoked "Trustwave Extended Validation SHA256 CA, Level 1" (from CCADB):
    # its serial has the high bit set, so the DER content starts with a 00 byte that openssl
    # does not print (it shows DCA0AC8B...). Both spellings must meet on (key, serial).
    revoked = _issuer("17_revoked_trustwave_ev_sha256_ca_level1.pem")
    assert revoked.serial_hex == "00DCA0AC8B48276ADC2A5C92DCBB9ED3B5"
    facts = _load("17.crl", "17.pem")
    matches = [r for r in facts.crl_revocations if r.serial_hex == revoked.serial_hex]
    assert len(matches) == 1
    assert matches[0].issuer_spki_sha256 == _issuer("17.pem").spki_sha256
    assert matches[0].revoked_at == datetime(2015, 8, 12, 20, 30, 12, tzinfo=UTC)
    assert revoked.aki == _issuer("17.pem").ski  # the same key, by key id too


def test_the_issuer_key_found_among_many_known_certificates() -> None:
    everyone = [_issuer(Path(row["file"]).with_suffix(".pem").name) for row in INDEX]
    facts = load_crl(CRLS / "13.crl", _ctx(*everyone))
    assert {r.issuer_spki_sha256 for r in facts.crl_revocations} == {_issuer("13.pem").spki_sha256}
    assert facts.crl_revocations[0].reason == "cessationOfOperation"
    assert facts.crl_revocations[0].serial_hex == "040000000001220D3C0F75"


def test_an_empty_crl_yields_no_revocation() -> None:
    assert _load("1.crl", "1.pem") == Facts()


def test_a_pem_crl_gives_the_same_entries(tmp_path: Path) -> None:
    der = (CRLS / "13.crl").read_bytes()
    body = base64.encodebytes(der).decode()
    path = tmp_path / "globalsign-r2.crl"
    path.write_text(f"-----BEGIN X509 CRL-----\n{body}-----END X509 CRL-----\n")
    from_pem = load_crl(path, _ctx(_issuer("13.pem"))).crl_revocations
    from_der = _load("13.crl", "13.pem").crl_revocations
    assert len(from_pem) == 8
    assert [(r.serial_hex, r.revoked_at, r.reason) for r in from_pem] == [
        (r.serial_hex, r.revoked_at, r.reason) for r in from_der
    ]
    assert from_pem[0].source == f"crl:{path}#1"


def test_a_crl_of_an_unknown_issuer_names_the_file_and_the_issuer() -> None:
    path = CRLS / "5.crl"
    _fails(
        path,
        _ctx(_issuer("16.pem")),  # SecureTrust's Secure Global CA, another name
        f"{path}: no known CA certificate is the CRL's issuer {XRAMP_NAME}"
        " with key id C64FA23D066384099CCE62E404AC8D5CB5E9B61B",
    )


def test_a_crl_with_no_known_issuers_at_all_is_refused() -> None:
    path = CRLS / "eid2011.crl"
    with pytest.raises(SourceError, match=r"no known CA certificate is the CRL's issuer .*EID-SK"):
        load_crl(path, _ctx())


def test_a_tampered_signature_does_not_verify(tmp_path: Path) -> None:
    data = bytearray((CRLS / "5.crl").read_bytes())
    data[-1] ^= 0x01  # the last byte of the signature BIT STRING
    path = tmp_path / "5-tampered.crl"
    path.write_bytes(bytes(data))
    _fails(
        path,
        _ctx(_issuer("5.pem")),
        f"{path}: CRL signature does not verify with the key of any of the 1 known CA"
        f" certificate(s) named {XRAMP_NAME}",
    )


def test_a_tampered_entry_does_not_verify(tmp_path: Path) -> None:
    data = (CRLS / "5.crl").read_bytes()
    serial = bytes.fromhex("40388FB9")
    assert data.count(serial) == 1
    path = tmp_path / "5-serial-changed.crl"
    path.write_bytes(data.replace(serial, bytes.fromhex("40388FB8")))
    _fails(path, _ctx(_issuer("5.pem")), f"{path}: CRL signature does not verify")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty, no CRL found"),
        (b"\x30\x03\x02\x01\x01", "not a DER CRL: "),
        (b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "not a PEM CRL: "),
    ],
)
def test_what_is_not_a_crl(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.crl"
    path.write_bytes(content)
    _fails(path, _ctx(_issuer("5.pem")), f"{path}: {message}")


def test_two_pem_crls_in_one_file_are_refused(tmp_path: Path) -> None:
    block = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
    path = tmp_path / "two.crl"
    path.write_text(block * 2)
    _fails(path, _ctx(), f"{path}: holds 2 PEM CRLs; give one a file")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.crl"
    _fails(path, _ctx(), f"{path}: cannot read: No such file or directory")


# No real CRL at hand is indirect or a delta: the two cases below need a CRL signed by a key
# the test holds, so a throwaway CA is generated for them (and only for them).


def _throwaway_ca() -> tuple[ec.EllipticCurvePrivateKey, CertInfo, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "invsync test CRL issuer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, parse_certificate(cert.public_bytes(serialization.Encoding.DER)), name


def _entry(serial: int, *extensions: x509.ExtensionType) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.build()


def _signed_crl(tmp_path: Path, *entries: x509.RevokedCertificate) -> tuple[Path, CertInfo]:
    key, info, name = _throwaway_ca()
    builder = x509.CertificateRevocationListBuilder().issuer_name(name)
    builder = builder.last_update(NOW).next_update(NOW + timedelta(days=1))
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    path = tmp_path / "generated.crl"
    path.write_bytes(builder.sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.DER))
    return path, info


def _indirect_entry(serial: int) -> x509.RevokedCertificate:
    other = x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA")]))
    return _entry(serial, x509.CertificateIssuer([other]))


def test_an_indirect_entry_is_refused_or_skipped(tmp_path: Path) -> None:
    path, info = _signed_crl(tmp_path, _entry(1), _indirect_entry(2), _entry(3))
    _fails(path, _ctx(info), f"{path}#2: CRL entry names another certificate issuer")
    facts = load_crl(path, _ctx(info, skip_invalid=True))
    assert [r.serial_hex for r in facts.crl_revocations] == ["01", "03"]
    assert {r.crl_signature_hash for r in facts.crl_revocations} == {"sha384"}
    assert facts.skipped == (
        Skipped(f"{path}#2", "CRL entry names another certificate issuer (indirect CRL)"),
    )


def test_remove_from_crl_is_not_a_revocation(tmp_path: Path) -> None:
    removed = x509.CRLReason(x509.ReasonFlags.remove_from_crl)
    held = x509.CRLReason(x509.ReasonFlags.certificate_hold)
    path, info = _signed_crl(tmp_path, _entry(0x80, removed), _entry(0x81, held))
    facts = load_crl(path, _ctx(info))
    assert [(r.serial_hex, r.reason) for r in facts.crl_revocations] == [
        ("0081", "certificateHold")
    ]
    assert facts.crl_revocations[0].source == f"crl:{path}#2"
