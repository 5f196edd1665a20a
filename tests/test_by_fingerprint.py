"""`invsync reconcile` of plain PEM lists by fingerprint first (`agent.inventory.by_fingerprint`):
the same findings and counts as reading both lists in full, or the full reading itself.

The pool is the real SECOM/JPRS certificates (the incident's reissued doppelgangers among them,
and self-signed roots) plus three made here: a certificate that is not a CA, a self-issued CA
certificate signed by another key (self-issued, not self-signed: in scope), and a second
member of a doppelganger group of made certificates.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.errors import SourceError
from invsync.agent.inventory import offline
from invsync.agent.inventory.by_fingerprint import OfflineSide, compare_plain_lists
from invsync.agent.inventory.offline import PublicSources, compared_sides, offline_sides
from invsync.agent.inventory.scope import issued_ca_certificates
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.der import certificate_parts
from invsync.agent.model.findings import Finding
from invsync.agent.model.record import parse_certificate
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.sources.pem import pem_ders
from invsync.server.cli import invsync
from tests.paths import DEMO, FIXTURES, SECOM_JPRS

AT = datetime(2021, 3, 1, tzinfo=UTC)
CTX = SourceContext(now=AT)
REAL = [
    SECOM_JPRS / "secom_hierarchy_all_ccadb.pem",
    SECOM_JPRS / "jprs_intermediates_all_generations.pem",
    SECOM_JPRS / "secom_roots_selfsigned.pem",
    DEMO / "jprs_ca_certificates.pem",
]


def _made(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    serial: int,
) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(
            subject
            if name.startswith("Self-issued")
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Made Root")])
        )
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(AT - timedelta(days=30))
        .not_valid_after(AT + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def _pool() -> list[bytes]:
    ders: dict[bytes, None] = {}
    for path in REAL:
        ders.update(dict.fromkeys(pem_ders(path.read_text(), str)))
    root, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    made = [
        _made("Made Leaf", key, root, ca=False, serial=1),
        _made("Self-issued CA", key, root, ca=True, serial=2),
        _made("Made Twin CA", key, root, ca=True, serial=3),
        _made("Made Twin CA", key, root, ca=True, serial=4),
    ]
    return [*ders, *made]


POOL = _pool()


def _twins() -> list[bytes]:
    """Every certificate that shares its subject and key with another one of the pool: random
    lists of the whole pool would seldom hold a doppelganger group across both sides."""
    groups: dict[str, list[bytes]] = {}
    for der in POOL:
        groups.setdefault(parse_certificate(der).doppelganger_key, []).append(der)
    return [der for members in groups.values() if len(members) > 1 for der in members]


TWINS = _twins()
PICK = st.one_of(st.sampled_from(TWINS), st.sampled_from(POOL))


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def _files(folder: Path, side: str, ders: list[bytes], cut: int) -> list[Path]:
    """The side's list as one or two PEM files, cut at `cut`."""
    parts = [ders[:cut], ders[cut:]] if 0 < cut < len(ders) else [ders]
    paths = []
    for number, part in enumerate(parts):
        path = folder / f"{side}-{number}.pem"
        path.write_text("# a comment line\n" + "".join(map(_pem, part)))
        paths.append(path)
    return paths


def _full(root: list[Path], sub: list[Path]) -> tuple[OfflineSide, OfflineSide]:
    sides = offline_sides([str(p) for p in root], [str(p) for p in sub], PublicSources(), CTX)
    return tuple(  # type: ignore[return-value]
        OfflineSide(
            issued_ca_certificates(a.records),
            len(a.records),
            len(issued_ca_certificates(a.records)),
            a.skipped,
        )
        for a in sides
    )


def _findings(sides: tuple[OfflineSide, OfflineSide]) -> tuple[Finding, ...]:
    root, sub = sides
    return reconcile(Side("root", root.records), Side("subordinate", sub.records), AT)


def _counts(sides: tuple[OfflineSide, OfflineSide]) -> list[tuple[int, int]]:
    return [(side.held, side.in_scope) for side in sides]


def test_the_real_lists_compare_the_same_by_fingerprint_as_in_full() -> None:
    root, sub = [REAL[0]], [DEMO / "jprs_ca_certificates.pem"]
    fast = compare_plain_lists(root, sub, CTX)
    assert fast is not None
    full = _full(root, sub)
    assert _counts(fast) == _counts(full) == [(185, 174), (10, 10)]
    assert len(_findings(full)) == 182
    assert _findings(fast) == _findings(full)
    # Only what a rule can need was decoded: far fewer records than the root lists.
    assert len(fast[0].records) < len(full[0].records)


def test_a_group_both_lists_hold_alike_is_read_for_its_constraints(tmp_path: Path) -> None:
    """NII Open Domain CA - G5: the 2018 certificate unconstrained, the 2020 reissues of its
    subject and key name-constrained. Both lists hold all three byte for byte, yet the group is
    a `doppelganger-inconsistent` finding: the fast reading decodes it too."""
    group = [
        der
        for der in POOL
        if parse_certificate(der).subject.startswith("CN=NII Open Domain CA - G5,")
    ]
    assert len(group) == 3
    root, sub = _files(tmp_path, "root", group, 0), _files(tmp_path, "sub", group, 0)
    fast = compare_plain_lists(root, sub, CTX)
    assert fast is not None
    assert [(f.code, f.sha256[:16]) for f in _findings(fast)] == [
        ("doppelganger-inconsistent", "80F5B0D16FAE8E72")
    ]
    assert _findings(fast) == _findings(_full(root, sub))


@settings(max_examples=60)
@given(
    root=st.lists(PICK, max_size=24),
    sub=st.lists(PICK, max_size=24),
    cuts=st.tuples(st.integers(0, 24), st.integers(0, 24)),
)
def test_any_two_lists_compare_the_same_by_fingerprint_as_in_full(
    root: list[bytes], sub: list[bytes], cuts: tuple[int, int]
) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        root_files, sub_files = (
            _files(folder, "root", root, cuts[0]),
            _files(folder, "sub", sub, cuts[1]),
        )
        if not root or not sub:  # a file with no certificate is the full reader's error
            assert compare_plain_lists(root_files, sub_files, CTX) is None
            return
        fast = compare_plain_lists(root_files, sub_files, CTX)
        assert fast is not None
        full = _full(root_files, sub_files)
        assert _counts(fast) == _counts(full)
        assert _findings(fast) == _findings(full)


def test_a_public_view_reads_both_lists_in_full() -> None:
    """A CRL (whose issuer the root lists) revokes one certificate on both sides: the view
    reaches records that fingerprints alone would have left unread."""
    crls = FIXTURES / "crls"
    listed = str(crls / "17_revoked_trustwave_ev_sha256_ca_level1.pem")
    public = PublicSources(crls=[str(crls / "17.crl")])
    sides = compared_sides([str(crls / "17.pem"), listed], [listed], public, CTX)
    assert [(side.held, side.in_scope) for side in sides] == [(2, 1), (1, 1)]
    assert all(r.revocation_evidence for side in sides for r in side.records)


def test_a_list_the_scan_refuses_gives_the_full_readers_error(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    root.write_text(
        _pem(POOL[0]) + "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    sub = _files(tmp_path, "sub", POOL[:3], 0)[0]
    command = [sys.executable, "-m", "invsync.server.cli", "reconcile", "--root", str(root)]
    result = subprocess.run(
        [*command, "--subordinate", str(sub)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert f"{root}:42: PEM block 'PRIVATE KEY' is not a certificate" in result.stderr


def test_the_cli_notes_what_it_set_aside_by_fingerprint(tmp_path: Path) -> None:
    sub = _files(tmp_path, "sub", POOL[:3], 0)[0]
    result = CliRunner().invoke(
        invsync,
        [
            "reconcile",
            "--root",
            str(REAL[0]),
            "--subordinate",
            str(sub),
            "--at",
            "2021-03-01T00:00:00Z",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "note: --root: set aside 11 of 185 certificates that are self-signed" in result.stderr
    assert '"ca_certificates": 174' in result.stdout


def _ccadb_ders() -> list[bytes]:
    folder = FIXTURES / "ccadb" / "pems"
    text = io.StringIO()
    for path in sorted(folder.glob("*.csv.gz")):
        text.write(gzip.decompress(path.read_bytes()).decode())
    ders = []
    for block in text.getvalue().split("-----BEGIN CERTIFICATE-----")[1:]:
        body = block.split("-----END CERTIFICATE-----")[0]
        pem = "-----BEGIN CERTIFICATE-----" + body + "-----END CERTIFICATE-----\n"
        try:
            ders.append(x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER))
        except ValueError:
            continue
    return ders


@pytest.mark.filterwarnings("ignore::UserWarning")  # names longer than RFC 5280 allows
def test_parts_as_encoded_are_what_cryptography_encodes_in_ccadb() -> None:
    """The premise of hashing a subject as the certificate encodes it, and of slicing the
    TBSCertificate from the DER instead of asking `cryptography` (record.py), on every
    certificate of CCADB's PEM report whose names `cryptography` decodes (more than 10,000,
    one of them with a multi-valued RDN): the bytes sliced are the bytes `cryptography` makes
    of what it decoded."""
    checked = 0
    for der in _ccadb_ders():
        cert = x509.load_der_x509_certificate(der)
        try:
            canonical = cert.issuer.public_bytes(), cert.subject.public_bytes()
        except ValueError:
            continue  # a Name whose values cryptography cannot decode
        parts = certificate_parts(der)
        assert (parts.issuer, parts.subject) == canonical, cert.subject
        assert parts.tbs == cert.tbs_certificate_bytes, cert.subject
        checked += 1
    assert checked > 10_000


def _unsupported_key(der: bytes) -> bytes:
    """`der` with its key's algorithm changed to an OID `cryptography` does not support (as for
    an SM2 or GOST key): the certificate loads, its key does not."""
    ec_public_key = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
    assert der.count(ec_public_key) == 1
    return der.replace(ec_public_key, bytes.fromhex("06072a8648ce3d0209"))


def test_a_certificate_both_hold_is_compared_by_fingerprint_even_if_its_key_does_not_decode(
    tmp_path: Path,
) -> None:
    """The documented difference: held by both, it is counted; held by one side, it must be
    parsed, and the comparison falls back to the full reading, which names it."""
    odd = _unsupported_key(POOL[-1])
    with pytest.raises(ValueError, match="Unknown key type"):
        parse_certificate(odd)
    both = _files(tmp_path, "both", [odd, POOL[0]], 0)
    sides = compare_plain_lists(both, both, CTX)
    assert sides is not None
    assert [(side.held, side.records) for side in sides] == [(2, []), (2, [])]
    one = _files(tmp_path, "one", [POOL[0]], 0)
    assert compare_plain_lists(both, one, CTX) is None
    with pytest.raises(SourceError, match="certificate 1 cannot be parsed: UnsupportedAlgorithm"):
        compared_sides([str(p) for p in both], [str(p) for p in one], PublicSources(), CTX)


def test_plain_pem_lists_never_take_the_full_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object) -> None:
        raise AssertionError("read in full")

    monkeypatch.setattr(offline, "offline_sides", full)
    root, sub = [str(REAL[0])], [f"pem:{DEMO / 'jprs_ca_certificates.pem'}"]
    sides = compared_sides(root, sub, PublicSources(), CTX)
    assert [(side.held, side.in_scope) for side in sides] == [(185, 174), (10, 10)]


def test_a_list_not_named_pem_is_read_in_full_not_sniffed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Telling the kind of a `.crt` or unsuffixed file means reading it whole: such lists take
    the full reading, which reads them once as it must anyway."""
    crt = tmp_path / "bundle.crt"
    crt.write_bytes(REAL[1].read_bytes())
    monkeypatch.setattr(offline, "compare_plain_lists", lambda *args: pytest.fail("fast path"))
    sides = compared_sides([str(crt)], [str(REAL[1])], PublicSources(), CTX)
    assert [side.held for side in sides] == [16, 16]
