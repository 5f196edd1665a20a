"""Names read from their DER (agent/model/names.py) are spelled exactly as `cryptography` spells
them, or left to it: on every real certificate at hand, on names `cryptography` itself encodes
from generated attributes, and on mutated bytes."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import given
from hypothesis import strategies as st

from invsync.agent.model import record
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.der import certificate_parts
from invsync.agent.model.names import name_text
from invsync.agent.sources.ccadb_pems import load_ccadb_pem_files
from tests.fuzz.mutation import mutated
from tests.paths import DEMO, FIXTURES, SECOM_JPRS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def _cryptography(name: x509.Name) -> tuple[str, tuple[str, ...]]:
    organizations = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return name.rfc4514_string(), tuple(a.value for a in organizations if isinstance(a.value, str))


def _real_ders() -> list[bytes]:
    """The demo's, SECOM's and JPRS's certificates, and every CCADB certificate in the fixtures."""
    pems = sorted([*DEMO.glob("*.pem"), *SECOM_JPRS.rglob("*.pem")])
    ders = [c.public_bytes(Encoding.DER) for path in pems for c in _certificates(path)]
    ctx = SourceContext(now=datetime(2026, 1, 1, tzinfo=UTC), skip_invalid=True)
    paths = sorted((FIXTURES / "ccadb" / "pems").glob("*.csv.gz"))
    ders += [r.info.der for r in load_ccadb_pem_files(paths, ctx).records]
    return list(dict.fromkeys(ders))


def _certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@pytest.fixture(scope="module")
def real() -> list[bytes]:
    return _real_ders()


def test_every_real_name_is_read_as_cryptography_spells_it(real: list[bytes]) -> None:
    read = left = 0
    for der in real:
        cert = x509.load_der_x509_certificate(der)
        parts = certificate_parts(der)
        issuer_der, subject_der = parts.issuer, parts.subject
        for raw, name in ((issuer_der, cert.issuer), (subject_der, cert.subject)):
            mine = name_text(raw)
            if mine is None:
                left += 1
                continue
            read += 1
            assert mine == _cryptography(name), der.hex()[:64]
            assert raw == name.public_bytes()  # the bytes kept are the ones cryptography writes
    # Every real CCADB name but a handful is read here; the rest are left to cryptography.
    assert len(real) > 10_000
    assert left < read / 100, (read, left)


def test_a_parsed_certificate_has_cryptography_s_names(real: list[bytes]) -> None:
    for der in real[::7]:
        info, cert = record._parse_certificate(der), x509.load_der_x509_certificate(der)
        assert (info.subject, info.subject_organizations) == _cryptography(cert.subject)
        assert info.issuer == cert.issuer.rfc4514_string()
        assert info.subject_der == cert.subject.public_bytes()
        assert info.issuer_der == cert.issuer.public_bytes()


def test_names_left_to_cryptography_are_still_parsed() -> None:
    """A multi-valued RDN and a BMPString: not read here, spelled by cryptography."""
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "A"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "B"),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.LOCALITY_NAME, "Tōkyō", _ASN1Type.BMPString)]
            ),
        ]
    )
    assert name_text(name.public_bytes()) is None
    assert _cryptography(x509.Name.from_bytes(name.public_bytes())) == ("L=Tōkyō,CN=A+O=B", ("B",))


@pytest.mark.parametrize(
    ("value", "spelled"),
    [
        ("Co., Ltd.", "O=Co.\\, Ltd."),
        ("#1", "O=\\#1"),
        (" lead", "O=\\ lead"),
        ("trail ", "O=trail\\ "),
        (" ", "O=\\ "),
        ('a"b+c;d<e>f\\g\0', 'O=a\\"b\\+c\\;d\\<e\\>f\\\\g\\00'),
    ],
)
def test_values_are_escaped_as_cryptography_escapes_them(value: str, spelled: str) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, value)])
    assert name.rfc4514_string() == spelled
    assert name_text(name.public_bytes()) == (spelled, (value,))


_OIDS = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.COUNTRY_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.STREET_ADDRESS,
    NameOID.DOMAIN_COMPONENT,
    NameOID.USER_ID,
    NameOID.SERIAL_NUMBER,
    NameOID.EMAIL_ADDRESS,
    NameOID.ORGANIZATION_IDENTIFIER,
    ObjectIdentifier("2.999.1234567.5"),
    ObjectIdentifier("1.3.6.1.4.1.311.60.2.1.3"),
]
_TYPES = [
    _ASN1Type.UTF8String,
    _ASN1Type.PrintableString,
    _ASN1Type.IA5String,
    _ASN1Type.T61String,
    _ASN1Type.BMPString,
    _ASN1Type.VisibleString,
]


@st.composite
def _names(draw: st.DrawFn) -> x509.Name:
    rdns = []
    for _ in range(draw(st.integers(0, 5))):
        attributes = []
        for oid in draw(st.lists(st.sampled_from(_OIDS), min_size=1, max_size=2, unique=True)):
            kind = draw(st.sampled_from(_TYPES))
            alphabet = st.characters(max_codepoint=0x7F if kind != _ASN1Type.UTF8String else 0x2FFF)
            value = draw(st.text(alphabet, min_size=1, max_size=70))
            attributes.append(x509.NameAttribute(oid, value, kind, _validate=False))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


@given(_names())
def test_generated_names_are_read_as_cryptography_reads_them(name: x509.Name) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            der = name.public_bytes()
        except ValueError:
            return  # cryptography will not encode it (text outside its string type)
        mine = name_text(der)
        if mine is not None:
            assert mine == _cryptography(x509.Name.from_bytes(der))


_SEEDS = [
    x509.Name.from_rfc4514_string(text).public_bytes()
    for text in ("CN=JPRS DV ECC CA 2024 G1,O=Japan Registry Services Co.\\, Ltd.,C=JP", "")
]


@given(mutated(_SEEDS))
def test_mutated_names_are_read_only_where_cryptography_reads_the_same(data: bytes) -> None:
    """Whatever the bytes, a value or None, never an exception; and a value only for bytes
    cryptography decodes to the same name."""
    mine = name_text(data)
    if mine is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mine == _cryptography(x509.Name.from_bytes(data))


def _tlv(tag: int, body: bytes, long_form: bool = False) -> bytes:
    """A DER element, or with a long-form length DER forbids for short content."""
    if long_form or len(body) >= 0x80:
        size = len(body).to_bytes(max(1, (len(body).bit_length() + 7) // 8), "big")
        return bytes([tag, 0x80 | len(size)]) + size + body
    return bytes([tag, len(body)]) + body


def _base128(arc: int) -> bytes:
    out = [arc & 0x7F]
    while arc := arc >> 7:
        out.append(0x80 | (arc & 0x7F))
    return bytes(reversed(out))


def _one_attribute(oid: bytes, tag: int, value: bytes, long_at: str = "") -> bytes:
    pair = _tlv(0x06, oid, long_at == "oid") + _tlv(tag, value, long_at == "value")
    rdn = _tlv(0x31, _tlv(0x30, pair, long_at == "pair"), long_at == "rdn")
    return _tlv(0x30, rdn, long_at == "name")


_CN = bytes.fromhex("550403")


@pytest.mark.parametrize(
    "der",
    [
        *(_one_attribute(_CN, 0x0C, b"x", at) for at in ("oid", "value", "pair", "rdn", "name")),
        _one_attribute(b"", 0x0C, b"x"),  # an empty OID
        _one_attribute(bytes.fromhex("2a8001"), 0x0C, b"x"),  # a leading zero septet
        _one_attribute(b"\x2a" * 64, 0x0C, b"x"),  # over 63 bytes
        _one_attribute(b"\x2a" + _base128(1 << 128), 0x0C, b"x"),  # an arc over 128 bits
        _one_attribute(_CN, 0x13, b"a*b"),  # outside PrintableString's alphabet
        _one_attribute(_CN, 0x16, b"\xe9"),  # not IA5
        _one_attribute(_CN, 0x0C, b"\xed\xa0\x80"),  # a UTF-8 surrogate
    ],
)
def test_bytes_cryptography_refuses_are_not_read(der: bytes) -> None:
    with pytest.raises(ValueError, match="error parsing asn1 value"):
        x509.Name.from_bytes(der)
    assert name_text(der) is None


@given(st.lists(st.integers(0, (1 << 130)), min_size=1, max_size=12), st.integers(0, 2))
def test_any_oid_is_read_as_cryptography_reads_it(arcs: list[int], first: int) -> None:
    second = arcs[0] % 40 if first < 2 else arcs[0]
    oid = b"".join(_base128(arc) for arc in [first * 40 + second, *arcs[1:]])
    der = _one_attribute(oid, 0x0C, b"v")
    try:
        expected: tuple[str, tuple[str, ...]] | None = _cryptography(x509.Name.from_bytes(der))
    except ValueError:
        expected = None
    assert name_text(der) == expected
