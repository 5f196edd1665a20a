"""A CertInfo as stored facts (agent/model/derived.py): every field of real certificates comes
back exactly, and a row that cannot be used gives None, never an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.model import derived, record
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.derived import facts_json, info_from_json
from invsync.agent.model.record import CertInfo
from invsync.agent.sources.ccadb_pems import load_ccadb_pem_files
from tests.paths import DEMO, FIXTURES, SECOM_JPRS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# The CCADB years holding 15 certificates whose extensions cryptography 50 refuses.
CCADB_YEARS = (2003, 2005, 2021)


def _pem_ders(path: Path) -> list[bytes]:
    return [
        c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(path.read_bytes())
    ]


def _real_ders() -> list[bytes]:
    pems = [*DEMO.glob("*.pem"), *SECOM_JPRS.glob("*.pem"), *SECOM_JPRS.glob("individual/*.pem")]
    ders = [der for path in sorted(pems) for der in _pem_ders(path)]
    ccadb = FIXTURES / "ccadb" / "pems"
    paths = [ccadb / f"AllCertificatePEMsCSVFormat_NotBeforeYear_{y}.csv.gz" for y in CCADB_YEARS]
    ctx = SourceContext(now=datetime(2026, 1, 1, tzinfo=UTC), skip_invalid=True)
    ders += [r.info.der for r in load_ccadb_pem_files(paths, ctx).records]
    return list(dict.fromkeys(ders))


@pytest.fixture(scope="module")
def parsed() -> list[CertInfo]:
    """Every real certificate at hand, parsed by cryptography (no cache, no shared CertInfo)."""
    return [record._parse_certificate(der) for der in _real_ders()]


def _stored(info: CertInfo) -> CertInfo | None:
    return info_from_json(facts_json(info), info.sha256, info.der)


def test_every_field_of_every_real_certificate_comes_back_exactly(parsed: list[CertInfo]) -> None:
    assert len(parsed) > 600
    assert sum(1 for info in parsed if info.extensions_error) == 15
    for info in parsed:
        back = _stored(info)
        assert back == info, info.sha256
        for field in fields(CertInfo):  # == would take 1 for True, or a list for a tuple
            mine, theirs = getattr(back, field.name), getattr(info, field.name)
            assert type(mine) is type(theirs), (info.sha256, field.name)
        assert back is not None and back.not_before.tzinfo == info.not_before.tzinfo == UTC


def test_the_stored_fields_are_every_field_of_certinfo() -> None:
    """A field added to CertInfo must be stored too: one left out would come back as its
    default, or not at all."""
    assert len(set(derived.STORED)) == len(derived.STORED)
    assert {*derived.STORED, "der"} == {field.name for field in fields(CertInfo)}


def _at(name: str) -> int:
    """Where a field is in a stored row: after its FORMAT."""
    return 1 + derived.STORED.index(name)


def test_names_and_key_are_stored_as_slices_of_the_der_not_again(parsed: list[CertInfo]) -> None:
    info = parsed[0]
    row = json.loads(facts_json(info))
    assert info.der.hex() not in facts_json(info) and len(row) == len(derived.STORED) + 1
    at, length = row[_at("spki_der")]
    assert info.der[at : at + length] == info.spki_der
    assert len(facts_json(info)) < len(info.der)


def test_bytes_not_found_in_the_der_are_stored_as_base64(parsed: list[CertInfo]) -> None:
    odd = replace(parsed[0], subject_der=b"\x30\x03not in the certificate")
    assert isinstance(json.loads(facts_json(odd))[_at("subject_der")], str)
    assert _stored(odd) == odd


def _edited(info: CertInfo, **changes: object) -> str:
    row = json.loads(facts_json(info))
    for name, value in changes.items():
        row[0 if name == "format" else _at(name)] = value
    return json.dumps(row)


def _as_an_object(info: CertInfo) -> str:
    """The row as the first format wrote it: an object of named fields."""
    row = json.loads(facts_json(info))
    return json.dumps({"format": row[0], **dict(zip(derived.STORED, row[1:], strict=True))})


UNUSABLE: dict[str, Callable[[CertInfo], object]] = {
    "not JSON": lambda info: "{not json",
    "not a row": lambda info: "[1, 2]",
    "an object of the first format": _as_an_object,
    "not text": lambda info: 42,
    "not UTF-8": lambda info: b"\xff\xfe{}",
    "another format": lambda info: _edited(info, format="1 cryptography 1.0"),
    "no format": lambda info: _edited(info, format=None),
    "another certificate": lambda info: _edited(info, sha256="00" * 32),
    "a field missing": lambda info: json.dumps(json.loads(facts_json(info))[:-1]),
    "a field more": lambda info: json.dumps([*json.loads(facts_json(info)), "x"]),
    "a flag as a string": lambda info: _edited(info, is_ca="yes"),
    "a flag as a number": lambda info: _edited(info, self_issued=1),
    "a path length as a flag": lambda info: _edited(info, path_len=True),
    "a text as a number": lambda info: _edited(info, subject=7),
    "an error as null": lambda info: _edited(info, extensions_error=None),
    "a key id as a number": lambda info: _edited(info, aki=3),
    "an EKU not text": lambda info: _edited(info, ekus=[1]),
    "CRL URLs as text": lambda info: _edited(info, crl_urls="http://crl"),
    "a naive time": lambda info: _edited(info, not_after="2030-01-01T00:00:00"),
    "a time in Tokyo": lambda info: _edited(info, not_after="2030-01-01T09:00:00+09:00"),
    "not a time": lambda info: _edited(info, not_before="yesterday"),
    "a time as a number": lambda info: _edited(info, not_before=0),
    "a slice past the DER": lambda info: _edited(info, spki_der=[0, len(info.der) + 1]),
    "a negative slice": lambda info: _edited(info, spki_der=[-5, 3]),
    "a slice of three": lambda info: _edited(info, spki_der=[0, 1, 2]),
    "a slice of flags": lambda info: _edited(info, spki_der=[True, True]),
    "bad base64": lambda info: _edited(info, issuer_der="@@@"),
    "bytes as a number": lambda info: _edited(info, issuer_der=5),
    "deep nesting": lambda info: "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("how", UNUSABLE)
def test_a_row_that_cannot_be_used_gives_none(parsed: list[CertInfo], how: str) -> None:
    info = parsed[0]
    assert info_from_json(UNUSABLE[how](info), info.sha256, info.der) is None
