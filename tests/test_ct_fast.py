"""The CT reader's fast path (agent.sources.ct_fast) gives what the previous reader gave
(tests/ct_reference.py): the same records, skipped entries, errors and progress, on the real
SECOM/JPRS certificates and on synthetic mixes. Its two shortcuts are held by Hypothesis to the
slow steps they stand for: the offsets to `decode_entry`, `may_be_ca` to `cryptography`."""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Sequence
from datetime import timedelta
from itertools import zip_longest
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import DECODE_ERRORS
from invsync.agent.sources.ct import load_ct_entries
from invsync.agent.sources.ct_entries import EntryError, decode_entry
from invsync.agent.sources.ct_fast import by_offsets, entry_certificate, may_be_ca
from tests import ct_helpers as enc
from tests.ct_helpers import HIERARCHY, JPRS, ROOT_CA2, ROOT_CA2_SPKI, ROOTS, SECOM_KEYS, der, spki
from tests.ct_reference import both, reference_is_ca
from tests.fuzz.mutation import mutated
from tests.test_ct import MALFORMED, NOW, OTHER_KEY, TEST_ISSUER, TEST_KEY, _issue

TEST_SPKI = spki(TEST_KEY.public_key())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
BASIC_CONSTRAINTS_ID = bytes.fromhex("0603551d13")


def _end_entity(
    name: str,
    *,
    constraints: str,
    precert: bool = False,
    key: ec.EllipticCurvePrivateKey = TEST_KEY,
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A server certificate signed by `key`; `constraints`: "none" (no BasicConstraints), or
    cA FALSE "critical" or "plain"."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(TEST_ISSUER)
        .public_key(LEAF_KEY.public_key())
        .serial_number(0x5EED + len(name))
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    )
    if constraints != "none":
        basic = x509.BasicConstraints(ca=False, path_length=None)
        builder = builder.add_extension(basic, critical=constraints == "critical")
    if precert:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256())


def _ctx(keys: Sequence[bytes], *, skip: bool = False) -> SourceContext:
    return SourceContext(now=NOW, party_ca_spkis=keys, skip_invalid=skip)


def _write(tmp_path: Path, entries: Sequence[object], layout: str) -> Path:
    path = tmp_path / f"entries-{layout}.json"
    if layout == "document":
        path.write_text(json.dumps({"entries": list(entries)}, indent=1))
    else:  # JSON Lines, three entries a line, CRLF
        lines = [
            json.dumps({"entries": list(entries[i : i + 3])}) for i in range(0, len(entries), 3)
        ]
        path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    return path


def _precert(cert: x509.Certificate, issuer_spki: bytes = ROOT_CA2_SPKI) -> dict[str, str]:
    return enc.precert_entry(der(cert), cert.tbs_certificate_bytes, issuer_spki, [der(ROOT_CA2)])


def _synthetic_mix() -> list[object]:
    """End-entity certificates of every BasicConstraints form, logged both ways, among CA
    certificates the test party signed, one it did not, and malformed entries."""
    kept = _issue("test sub CA", issuer=TEST_ISSUER, key=TEST_KEY, ca=True)
    kept_pre = _issue("test precert CA", issuer=TEST_ISSUER, key=TEST_KEY, ca=True, precert=True)
    foreign = _issue("foreign CA", issuer=TEST_ISSUER, key=OTHER_KEY, ca=True)
    forms = [
        (form, pre, key)
        for form in ("none", "critical", "plain")
        for pre in (False, True)
        for key in (TEST_KEY, OTHER_KEY)
    ]
    end_entities = [
        _end_entity(f"www{i}.example.jp", constraints=form, precert=pre, key=key)
        for i, (form, pre, key) in enumerate(forms)
    ]
    logged = [
        _precert(c, TEST_SPKI) if _poisoned(c) else enc.x509_entry(der(c), [der(kept)])
        for c in end_entities
    ]
    logged += [enc.x509_entry(der(kept)), _precert(kept_pre, TEST_SPKI)]
    logged += [enc.x509_entry(der(foreign))]
    logged += [enc.x509_entry(der(c), [der(ROOT_CA2)]) for c in JPRS[:3]]
    # Interleaved, so that bad entries come between good ones of every kind.
    malformed = [entry for _, entry, _ in MALFORMED]
    pairs = zip_longest(logged, malformed, fillvalue=_NONE)
    return [entry for pair in pairs for entry in pair if entry is not _NONE]


_NONE = object()


def _poisoned(cert: x509.Certificate) -> bool:
    return any(isinstance(e.value, x509.PrecertPoison) for e in cert.extensions)


# --- the same outcome as the previous reader


@pytest.mark.parametrize("layout", ["document", "lines"])
@pytest.mark.parametrize("keys", [SECOM_KEYS, [ROOT_CA2_SPKI]], ids=["secom", "rootca2"])
def test_the_real_certificates_read_as_before(
    tmp_path: Path, layout: str, keys: Sequence[bytes]
) -> None:
    entries = [enc.x509_entry(der(c), [der(ROOT_CA2)]) for c in [*ROOTS, *HIERARCHY, *JPRS]]
    entries += [_precert(c) for c in JPRS]
    fast, previous = both(_write(tmp_path, entries, layout), _ctx(keys))
    assert fast == previous
    facts = fast[0]
    assert not isinstance(facts, str)
    assert len(facts.records) > 102  # RootCA2 alone signed 102 of the hierarchy (test_ct.py)


@pytest.mark.parametrize("layout", ["document", "lines"])
@pytest.mark.parametrize("skip", [True, False], ids=["skip-invalid", "strict"])
def test_a_synthetic_mix_reads_as_before(tmp_path: Path, layout: str, skip: bool) -> None:
    path = _write(tmp_path, _synthetic_mix(), layout)
    fast, previous = both(path, _ctx([TEST_SPKI, *SECOM_KEYS], skip=skip))
    assert fast == previous
    if skip:
        facts = fast[0]
        assert not isinstance(facts, str)
        kinds = sorted(r.sources[0].kind for r in facts.records)
        assert kinds == ["ct", "ct", "ct", "ct", "ct-precert"]  # kept CA, its precert, 3 JPRS
        assert len(facts.skipped) == len(MALFORMED)
    else:
        assert fast[0] == f"{path}#1: {MALFORMED[0][2]}"


def test_end_entity_certificates_are_dropped_without_their_extensions_read(
    tmp_path: Path,
) -> None:
    # Every form a server certificate's BasicConstraints takes is told apart by its bytes.
    for form in ("none", "critical", "plain"):
        for precert in (False, True):
            certificate = der(_end_entity("www.example.jp", constraints=form, precert=precert))
            assert not may_be_ca(certificate), (form, precert)
    for cert in [*ROOTS, *JPRS]:
        assert may_be_ca(der(cert))


def test_a_malformed_extension_is_read_only_in_a_certificate_that_may_be_a_ca(
    tmp_path: Path,
) -> None:
    """The one difference from the previous reader, on purpose: the extensions of a certificate
    whose bytes say cA FALSE are not read, so one of them that cryptography refuses no longer
    stops the import (or skips the entry). A possible CA's extensions are read as before."""
    broken = x509.UnrecognizedExtension(ExtensionOID.ISSUER_ALTERNATIVE_NAME, b"\x30\x03\x82")
    end_entity = _end_entity("www.example.jp", constraints="critical", extra=[broken])
    ca = _issue_ca_with(broken)
    path = _write(tmp_path, [enc.x509_entry(der(end_entity)), enc.x509_entry(der(ca))], "lines")
    fast, previous = both(path, _ctx([TEST_SPKI], skip=True))
    message = "certificate cannot be parsed: error parsing asn1 value: ParseError"
    facts, earlier = fast[0], previous[0]
    assert not isinstance(facts, str) and not isinstance(earlier, str)
    assert facts.records == earlier.records == ()
    assert [s.location for s in facts.skipped] == [f"{path}#1"]
    assert facts.skipped[0].reason.startswith(message)
    assert [s.location for s in earlier.skipped] == [f"{path}#0", f"{path}#1"]
    with pytest.raises(SourceError, match="^" + re.escape(f"{path}#1: {message}")):
        load_ct_entries(path, _ctx([TEST_SPKI]))


def _issue_ca_with(extension: x509.ExtensionType) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken CA")]))
        .issuer_name(TEST_ISSUER)
        .public_key(LEAF_KEY.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(extension, critical=False)
        .sign(TEST_KEY, hashes.SHA256())
    )


def test_a_basic_constraints_id_in_another_encoding_is_refused_on_loading() -> None:
    """`may_be_ca` looks for one encoding of id-ce-basicConstraints; cryptography refuses the
    others when it loads the certificate, which the reader does for every entry."""
    certificate = der(JPRS[0])
    for other in ("0604551d8013", "068103551d13"):  # a padded arc; a long-form length
        changed = _with_replaced(certificate, BASIC_CONSTRAINTS_ID, bytes.fromhex(other))
        assert changed != certificate
        with pytest.raises(ValueError, match="Extension::extn_id"):
            x509.load_der_x509_certificate(changed)


def _with_replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    """DER `data` with each element equal to `old` replaced by `new`, the lengths of every
    element holding one made anew."""
    out = b""
    at = 0
    while at < len(data):
        tag, start, end = _element(data, at)
        if data[at:end] == old:
            out += new
        elif tag & 0x20:  # constructed: its elements follow
            inner = _with_replaced(data[start:end], old, new)
            out += bytes([tag]) + _length(len(inner)) + inner
        else:
            out += data[at:end]
        at = end
    return out


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    size, start = data[at + 1], at + 2
    if size & 0x80:
        count = size & 0x7F
        size, start = int.from_bytes(data[start : start + count], "big"), start + count
    return data[at], start, start + size


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


# --- Hypothesis: the shortcuts against the steps they stand for


@st.composite
def _entries(draw: st.DrawFn) -> object:
    """Entries of both types, their decoded leaf and extra_data mutated, and odd shapes."""
    certificate = draw(st.binary(max_size=40))
    chain = draw(st.lists(st.binary(max_size=12), max_size=3))
    if draw(st.booleans()):
        entry = enc.x509_entry(certificate, chain)
    else:
        entry = enc.precert_entry(certificate, draw(st.binary(max_size=20)), TEST_SPKI, chain)
    leaf, extra = (base64.b64decode(entry[name]) for name in ("leaf_input", "extra_data"))
    if draw(st.booleans()):
        leaf = draw(mutated([leaf]))
    if draw(st.booleans()):
        extra = draw(mutated([extra]))
    shaped = {"leaf_input": enc.b64(leaf), "extra_data": enc.b64(extra)}
    odd = st.sampled_from([e for _, e, _ in MALFORMED])
    return draw(st.one_of(st.just(shaped), odd))


@given(entry=_entries())
def test_fuzz_the_offsets_read_what_decode_entry_reads(entry: object) -> None:
    try:
        decoded = decode_entry(entry)
    except EntryError as e:
        assert by_offsets(entry) is None
        with pytest.raises(EntryError, match="^" + re.escape(str(e)) + "$"):
            entry_certificate(entry)
        return
    expected = (decoded.precert, decoded.certificate)
    assert by_offsets(entry) == expected
    assert entry_certificate(entry) == expected


def _loaded_ca(certificate: bytes) -> bool | None:
    """Whether cryptography reads `certificate` as a CA's; None when it refuses it (then both
    readers raise the same error before asking)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return reference_is_ca(x509.load_der_x509_certificate(certificate))
    except DECODE_ERRORS:
        return None


SEED_DERS = [
    *(der(c) for c in JPRS[:4]),
    *(der(_end_entity("www.example.jp", constraints=f)) for f in ("none", "critical", "plain")),
]


@st.composite
def _near_basic_constraints(draw: st.DrawFn) -> bytes:
    """A seed with a byte changed close to its BasicConstraints, where `may_be_ca` looks."""
    data = bytearray(draw(st.sampled_from(SEED_DERS)))
    found = bytes(data).find(BASIC_CONSTRAINTS_ID)
    at = draw(st.integers(max(found - 4, 0), min(found + 16, len(data) - 1)))
    data[at] = draw(st.integers(0, 255))
    return bytes(data)


@given(certificate=st.one_of(mutated(SEED_DERS), _near_basic_constraints()))
def test_fuzz_a_certificate_cryptography_reads_as_a_ca_may_be_one(certificate: bytes) -> None:
    if _loaded_ca(certificate):
        assert may_be_ca(certificate)


@settings(max_examples=80)
@given(
    ca=st.sampled_from([None, False, True]),
    critical=st.booleans(),
    decoy_name=st.sampled_from(["", "04023000", "0405300301"]),  # ASCII: a UTF8String's bytes
    decoy_extension=st.sampled_from([None, "04023000", "0101ff04023000", "04053003010101ff"]),
)
def test_fuzz_basic_constraints_bytes_elsewhere_never_hide_a_ca(
    ca: bool | None, critical: bool, decoy_name: str, decoy_extension: str | None
) -> None:
    """The extension's ID with what follows a cA FALSE, in the subject name or in another
    extension's value: `may_be_ca` says False only when the certificate is no CA."""
    name = "no decoy"
    if decoy_name:
        name = "decoy " + (BASIC_CONSTRAINTS_ID + bytes.fromhex(decoy_name)).decode()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(TEST_ISSUER)
        .public_key(LEAF_KEY.public_key())
        .serial_number(11)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
    )
    if decoy_extension is not None:
        value = BASIC_CONSTRAINTS_ID + bytes.fromhex(decoy_extension)
        decoy = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), value)
        builder = builder.add_extension(decoy, critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, None), critical=critical)
    certificate = der(builder.sign(TEST_KEY, hashes.SHA256()))
    assert _loaded_ca(certificate) is bool(ca)
    if ca:
        assert may_be_ca(certificate)
    if not decoy_name and decoy_extension is None:  # nothing to mislead: bytes say it all
        assert may_be_ca(certificate) is bool(ca)
