"""CT get-entries files (RFC 6962), built from the real SECOM/JPRS certificates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from invsync.agent.errors import SourceError
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import SourceRef, sha256_hex
from invsync.agent.sources.ct import load_ct_entries
from tests import ct_helpers as enc
from tests.ct_helpers import (
    BUG_OV,
    HIERARCHY,
    JPRS,
    JPRS_2024,
    JPRS_SHA256,
    ROOT_CA2,
    ROOT_CA2_SPKI,
    ROOTS,
    SECOM_KEYS,
    der,
    spki,
)

NOW = datetime(2021, 3, 1, tzinfo=UTC)
# Keys made once per test run: one the test party holds, one nobody in the test trusts.
TEST_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def _issue(
    subject: str,
    *,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    ca: bool,
    precert: bool = False,
) -> x509.Certificate:
    """A certificate with fixed dates and serial, signed by `key` under the name `issuer`."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(0x1695993)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if precert:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(key, hashes.SHA256())


TEST_ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "invsync test party CA")])


def _ctx(keys: Sequence[bytes] = SECOM_KEYS, *, skip: bool = False) -> SourceContext:
    return SourceContext(now=NOW, party_ca_spkis=keys, skip_invalid=skip)


def _response(entries: Sequence[object]) -> dict[str, object]:
    return {"entries": list(entries)}


def _file(tmp_path: Path, *responses: dict[str, object], indent: int | None = None) -> Path:
    """One response as a JSON document, several as JSON Lines."""
    path = tmp_path / "entries.json"
    path.write_text("\n".join(json.dumps(r, indent=indent) for r in responses) + "\n")
    return path


def _kept(facts: Facts) -> list[tuple[str, str, str]]:
    return [(r.sha256, r.sources[0].kind, r.sources[0].location) for r in facts.records]


def _jprs_entries() -> list[dict[str, str]]:
    return [enc.x509_entry(der(c), [der(ROOT_CA2)]) for c in JPRS]


def test_fixture_sizes() -> None:
    assert (len(ROOTS), len(HIERARCHY), len(JPRS)) == (11, 185, 16)
    assert {sha256_hex(der(c)) for c in JPRS} == JPRS_SHA256


def test_keeps_the_16_jprs_certificates_and_the_precert_not_the_forged_name(
    tmp_path: Path,
) -> None:
    # RootCA2's name as issuer, but signed by another key: the name must not count.
    forged = _issue("forged JPRS CA", issuer=ROOT_CA2.subject, key=OTHER_KEY, ca=True)
    precert = enc.bug_ov_precert_entry()
    path = _file(tmp_path, _response([enc.x509_entry(der(forged)), *_jprs_entries(), precert]))
    facts = load_ct_entries(path, _ctx())
    x509_kept = [(sha256_hex(der(c)), "ct", f"{path}#{i}") for i, c in enumerate(JPRS, 1)]
    assert _kept(facts) == [*x509_kept, (BUG_OV, "ct-precert", f"{path}#17")]
    assert {sha for sha, _, _ in _kept(facts)} == JPRS_SHA256
    assert facts.records[0].sources == (SourceRef("ct", f"{path}#1", NOW, NOW),)
    assert facts.skipped == ()


def test_only_the_party_keys_count_rootca2_signed_102_of_the_hierarchy(tmp_path: Path) -> None:
    path = _file(tmp_path, _response([enc.x509_entry(der(c)) for c in HIERARCHY]))
    kept = {r.sha256 for r in load_ct_entries(path, _ctx([ROOT_CA2_SPKI])).records}
    # The test's oracle is the issuer name, which is unique in this hierarchy; the code under
    # test verifies signatures.
    by_name = {sha256_hex(der(c)) for c in HIERARCHY if c.issuer == ROOT_CA2.subject}
    assert len(kept) == 102
    assert kept == by_name, (kept - by_name, by_name - kept)
    assert JPRS_SHA256 & kept == JPRS_SHA256 - JPRS_2024


def test_end_entity_certificates_are_dropped_and_a_real_precert_is_kept(tmp_path: Path) -> None:
    ca = _issue("test sub CA", issuer=TEST_ISSUER, key=TEST_KEY, ca=True)
    leaf = _issue("www.example.jp", issuer=TEST_ISSUER, key=TEST_KEY, ca=False)
    pre = _issue("test precert CA", issuer=TEST_ISSUER, key=TEST_KEY, ca=True, precert=True)
    test_spki = spki(TEST_KEY.public_key())
    entries = [
        enc.x509_entry(der(leaf)),
        enc.x509_entry(der(ca)),
        enc.precert_entry(der(pre), pre.tbs_certificate_bytes, test_spki),
    ]
    facts = load_ct_entries(_file(tmp_path, _response(entries)), _ctx([test_spki]))
    assert [(sha, kind) for sha, kind, _ in _kept(facts)] == [
        (sha256_hex(der(ca)), "ct"),
        (sha256_hex(der(pre)), "ct-precert"),
    ]


def test_json_lines_number_entries_across_the_file_and_report_progress(tmp_path: Path) -> None:
    first, second = _jprs_entries()[:2], _jprs_entries()[2:3]
    path = _file(tmp_path, _response(first), _response([]), _response(second))
    calls: list[tuple[int, int | None]] = []
    ctx = SourceContext(
        now=NOW, party_ca_spkis=SECOM_KEYS, progress=lambda d, t: calls.append((d, t))
    )
    facts = load_ct_entries(path, ctx)
    assert [loc for _, _, loc in _kept(facts)] == [f"{path}#0", f"{path}#1", f"{path}#2"]
    assert calls == [(2, 3), (2, 3), (3, 3)]


def test_a_pretty_printed_response_is_one_document(tmp_path: Path) -> None:
    path = _file(tmp_path, _response(_jprs_entries()[:3]), indent=2)
    assert len(load_ct_entries(path, _ctx()).records) == 3


GOOD = enc.x509_entry(der(JPRS[0]))
HEADER = enc.leaf_header(enc.X509_ENTRY)
NOT_A_CERT = b"not a certificate"


def _raw(leaf: bytes, extra: bytes = enc.chain([])) -> dict[str, str]:
    return {"leaf_input": enc.b64(leaf), "extra_data": enc.b64(extra)}


def _x509_leaf_with(tail: bytes) -> bytes:
    return HEADER + enc.vector(der(JPRS[0]), 3) + tail


MALFORMED: list[tuple[str, object, str]] = [
    ("not an object", ["AAAA"], "expected an object with leaf_input and extra_data, got list"),
    ("missing field", {"leaf_input": GOOD["leaf_input"]}, "missing extra_data"),
    (
        "leaf not a string",
        {"leaf_input": 7, "extra_data": ""},
        "leaf_input must be a base64 string, got int",
    ),
    ("bad base64", {**GOOD, "leaf_input": "AA!A"}, "leaf_input is not base64 ("),
    ("bad extra base64", {**GOOD, "extra_data": "A"}, "extra_data is not base64 ("),
    (
        "truncated header",
        _raw(HEADER[:5]),
        "leaf_input truncated: timestamp needs 8 bytes at offset 2, 3 left",
    ),
    (
        "truncated certificate",
        _raw(HEADER + enc.uint(5000, 3) + b"\x30\x82"),
        "leaf_input truncated: ASN.1Cert needs 5000 bytes at offset 15, 2 left",
    ),
    (
        "unknown version",
        _raw(enc.leaf_header(0, version=1)),
        "leaf_input: unknown MerkleTreeLeaf version 1 (v1 is 0)",
    ),
    (
        "unknown leaf type",
        _raw(enc.leaf_header(0, leaf_type=1)),
        "leaf_input: unknown leaf type 1 (timestamped_entry is 0)",
    ),
    (
        "unknown entry type",
        _raw(enc.leaf_header(2)),
        "leaf_input: unknown entry type 2 (x509_entry is 0, precert_entry is 1)",
    ),
    (
        "no extensions",
        _raw(_x509_leaf_with(b"")),
        "leaf_input truncated: extensions length needs 2 bytes at offset",
    ),
    (
        "trailing leaf bytes",
        _raw(_x509_leaf_with(enc.vector(b"", 2) + b"\x00")),
        "leaf_input has 1 bytes after its last field",
    ),
    (
        "truncated chain",
        _raw(enc.x509_leaf(der(JPRS[0])), enc.uint(10, 3) + b"\x00\x00\x05abc"),
        "extra_data truncated: certificate_chain needs 10 bytes at offset 3, 6 left",
    ),
    (
        "truncated chain certificate",
        _raw(enc.x509_leaf(der(JPRS[0])), enc.vector(enc.uint(9, 3) + b"abc", 3)),
        "extra_data certificate_chain truncated: chain certificate 1 needs 9 bytes",
    ),
    (
        "trailing extra bytes",
        _raw(enc.x509_leaf(der(JPRS[0])), enc.chain([]) + b"\x00"),
        "extra_data has 1 bytes after its last field",
    ),
    (
        "precert without pre-certificate",
        _raw(enc.precert_leaf(b"tbs", ROOT_CA2_SPKI), b""),
        "extra_data truncated: pre_certificate length needs 3 bytes at offset 0, 0 left",
    ),
    (
        "certificate does not parse",
        enc.x509_entry(NOT_A_CERT),
        "certificate cannot be parsed: ",
    ),
    (
        "pre-certificate does not parse",
        enc.precert_entry(NOT_A_CERT, b"tbs", ROOT_CA2_SPKI),
        "pre-certificate cannot be parsed: ",
    ),
]


@pytest.mark.parametrize(
    ("entry", "message"), [(e, m) for _, e, m in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_a_malformed_entry_is_an_error_naming_file_and_index(
    tmp_path: Path, entry: object, message: str
) -> None:
    path = _file(tmp_path, _response([GOOD, entry]))
    with pytest.raises(SourceError, match="^" + re.escape(f"{path}#1: {message}")):
        load_ct_entries(path, _ctx())


def test_skip_invalid_keeps_the_good_entries_and_lists_the_bad(tmp_path: Path) -> None:
    bad = {**GOOD, "leaf_input": "AA!A"}
    path = _file(tmp_path, _response([bad, GOOD, enc.x509_entry(NOT_A_CERT)]))
    facts = load_ct_entries(path, _ctx(skip=True))
    assert [loc for _, _, loc in _kept(facts)] == [f"{path}#1"]
    assert [s.location for s in facts.skipped] == [f"{path}#0", f"{path}#2"]
    assert facts.skipped[0] == Skipped(
        f"{path}#0", "leaf_input is not base64 (Only base64 data is allowed)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "{path}: no get-entries response found (the file is empty)"),
        ('{"entries": [', "{path}: invalid JSON: Expecting value at column 14"),
        ('{"entries": []}\n{"entries": [\n', "{path}:2: invalid JSON: Expecting value"),
        ('{"entries": {}}', '{path}: not a get-entries response (expected {"entries": [...]})'),
        ('{"entries": []}\n[]\n', "{path}:2: not a get-entries response"),
        # Found by the CT fast path's review: nesting past Python's recursion limit.
        ("[" * 100_000, "{path}: invalid JSON: nested too deeply"),
        ('{"entries": []}\n' + "[" * 100_000 + "\n", "{path}:2: invalid JSON: nested too deeply"),
    ],
)
def test_a_file_that_is_not_get_entries_names_the_file(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "entries.json"
    path.write_text(content)
    with pytest.raises(SourceError, match="^" + re.escape(message.replace("{path}", str(path)))):
        load_ct_entries(path, _ctx())


def test_non_utf8_and_missing_files_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "entries.json"
    path.write_bytes(b'{"entries": ["\xff"]}')
    with pytest.raises(SourceError, match="^" + re.escape(f"{path}: not UTF-8 text")):
        load_ct_entries(path, _ctx())
    with pytest.raises(SourceError, match="^" + re.escape(f"{tmp_path / 'none'}: cannot read")):
        load_ct_entries(tmp_path / "none", _ctx())


def test_without_party_keys_nothing_could_match_so_it_is_refused(tmp_path: Path) -> None:
    path = _file(tmp_path, _response(_jprs_entries()))
    with pytest.raises(SourceError, match=r"no party CA keys to select CT entries by$"):
        load_ct_entries(path, _ctx([]))
    with pytest.raises(SourceError, match="party CA key 2 cannot be loaded: "):
        load_ct_entries(path, _ctx([ROOT_CA2_SPKI, b"junk"]))
