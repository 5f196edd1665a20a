"""Hostile input (issue 12): certificates, CRLs and base64 that `cryptography` or `base64` refuse
in ways other than ValueError. Only invsync's own errors may leave a reader, naming the file and
line (or, for a snapshot, the record index)."""

from __future__ import annotations

import base64
import csv
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.errors import CertificateError, SourceError
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.pki import new_ca
from invsync.agent.exchange.rejections import AccessDenied, status_of
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model.bundle import SourceContext
from invsync.agent.model.record import CertInfo, CertRecord, parse_certificate, sha256_hex
from invsync.agent.sources.ccadb import SHA256
from invsync.agent.sources.ccadb_pems import PEM, load_ccadb_pems
from invsync.agent.sources.crl import load_crl
from invsync.agent.sources.csv_log import load_csv_log
from invsync.agent.sources.issuance_log import load_issuance_log_facts
from invsync.agent.sources.pem import load_pem_file, pem_ders
from invsync.agent.sources.pkcs7 import load_pkcs7
from invsync.server.auth import NO_CERTIFICATE, party_of
from invsync.v1 import invsync_pb2 as pb
from tests.exchange_rig import Rig, edited, payload
from tests.tls_certs import client_certificate, pem

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CRLS = FIXTURES / "crls"
BUNDLE = FIXTURES / "secom_jprs" / "jprs_intermediates_all_generations.pem"
DERS = pem_ders(BUNDLE.read_text(), str)
DER = DERS[0]
NOW = datetime(2021, 3, 1, tzinfo=UTC)
CTX = SourceContext(now=NOW)
HOSTILE = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _edit(der: bytes, old: str, new: str) -> bytes:
    """`der` with every `old` (hex) replaced by `new` (hex, of the same length)."""
    assert bytes.fromhex(old) in der
    return der.replace(bytes.fromhex(old), bytes.fromhex(new))


VERSION_5 = _edit(DER, "a003020102", "a003020104")  # [0] version INTEGER 4, i.e. v5
TRUNCATED = DER[:-10]
UNKNOWN_KEY = _edit(DER, "2a864886f70d010101", "2a864886f70d01017e")  # SPKI algorithm
# authorityKeyIdentifier's OID made subjectKeyIdentifier's: two SKI extensions
DUPLICATE_EXTENSION = _edit(DER, "0603551d23", "0603551d0e")


def _signature_oid(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    last = int(cert.signature_algorithm_oid.dotted_string.rsplit(".", 1)[1])
    return "2a864886f70d0101" + f"{last:02x}"  # an RSA PKCS#1 signature OID, as DER content


UNKNOWN_SIGNATURE = _edit(DER, _signature_oid(DER), "2a864886f70d01017f")


# 1. parse_certificate: a value, or a CertificateError saying what was wrong.


@pytest.mark.parametrize(
    ("der", "cause"),
    [
        (VERSION_5, "InvalidVersion: 4 is not a valid X509 version"),
        (TRUNCATED, "error parsing asn1 value"),
        (UNKNOWN_KEY, "UnsupportedAlgorithm: Unknown key type"),
    ],
    ids=["version-5", "truncated", "unknown-key-algorithm"],
)
def test_a_refused_certificate_is_a_certificate_error(der: bytes, cause: str) -> None:
    with pytest.raises(CertificateError, match=f"^{re.escape(cause)}") as e:
        parse_certificate(der)
    assert isinstance(e.value, SourceError)
    assert e.value.__cause__ is not None


def test_duplicate_extensions_keep_the_certificate_and_say_why() -> None:
    info = parse_certificate(DUPLICATE_EXTENSION)
    assert info.extensions_error == "Duplicate 2.5.29.14 extension found"
    assert info.is_ca  # read from the DER itself
    assert info.ski is None


def test_an_unknown_signature_algorithm_is_no_reason_to_lose_the_certificate() -> None:
    assert parse_certificate(UNKNOWN_SIGNATURE).sha256 == sha256_hex(UNKNOWN_SIGNATURE)


def _value_or_certificate_error(der: bytes) -> None:
    try:
        info = parse_certificate(der)
    except CertificateError:
        return
    assert isinstance(info, CertInfo)


@HOSTILE
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_certificate_error(data: bytes) -> None:
    _value_or_certificate_error(data)


@st.composite
def mutated(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    der = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(der) - 1))
        kind = draw(st.sampled_from(["set", "flip", "cut", "insert", "delete"]))
        if kind == "set":
            der[at] = draw(st.integers(0, 255))
        elif kind == "flip":
            der[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del der[at:]
            if not der:
                break
        elif kind == "insert":
            der[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del der[at]
            if not der:
                break
    return bytes(der)


@HOSTILE
@given(mutated(DERS))
def test_mutated_real_certificates_raise_only_certificate_error(der: bytes) -> None:
    _value_or_certificate_error(der)


def test_the_server_refuses_a_snapshot_holding_a_version_5_record(
    rig: Rig, records: list[CertRecord]
) -> None:
    def version_5(msg: pb.SnapshotPayload) -> None:
        msg.records[1].certificate_der = VERSION_5

    env = sign_snapshot(edited(payload(records), version_5), rig.keys.jprs)
    before = rig.snapshots()
    with pytest.raises(rej.MalformedSnapshot) as caught:
        rig.push(env, "jprs")
    assert str(caught.value).startswith(
        "snapshot rejected [malformed-snapshot]: record 1: certificate DER does not parse"
        " (InvalidVersion: 4 is not a valid X509 version)"
    )
    assert status_of(caught.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert rig.snapshots() == before


def test_a_pem_file_with_a_version_5_certificate_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "v5.pem"
    body = base64.encodebytes(VERSION_5).decode()
    path.write_text(f"# a comment\n-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    with pytest.raises(SourceError, match=re.escape(f"{path}:2: certificate 1 cannot be parsed")):
        load_pem_file(path, NOW)


def test_an_issuance_log_with_a_version_5_certificate_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"certificate": base64.b64encode(VERSION_5).decode()}) + "\n")
    with pytest.raises(SourceError, match=re.escape(f"{path}:1: certificate cannot be parsed")):
        load_issuance_log_facts(path, CTX)


# 2. CRLs: only SourceError, naming the file.

CRL_FILES = sorted(CRLS.glob("*.crl"))
CRL_ISSUERS = tuple(
    parse_certificate(
        x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    for p in sorted(CRLS.glob("*.pem"))
)


@HOSTILE
@given(st.sampled_from(CRL_FILES), st.data())
def test_mutated_real_crls_raise_only_source_error_naming_the_file(
    tmp_path: Path, original: Path, data: st.DataObject
) -> None:
    der = data.draw(mutated([original.read_bytes()]))
    path = tmp_path / "mutated.crl"
    path.write_bytes(der)
    for skip in (False, True):
        try:
            load_crl(path, SourceContext(now=NOW, issuers=CRL_ISSUERS, skip_invalid=skip))
        except SourceError as e:
            assert str(e).startswith(f"{path}")


# 3. Non-ASCII inside base64: a SourceError naming file and line, in every reader.

PEM_TEXT = BUNDLE.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
PEM_TEXT = PEM_TEXT[PEM_TEXT.index("-----BEGIN") :]


def _non_ascii(pem: str) -> str:
    """`pem` with an 'é' in the middle of its second line."""
    lines = pem.split("\n")
    lines[1] = lines[1][:10] + "é" + lines[1][11:]
    return "\n".join(lines)


NON_ASCII = "invalid base64 (non-ASCII character 'é')"


def test_non_ascii_in_a_pem_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_text("\n" + _non_ascii(PEM_TEXT))
    with pytest.raises(SourceError, match=re.escape(f"{path}:2: certificate 1 cannot be parsed")):
        load_pem_file(path, NOW)
    with pytest.raises(SourceError, match=re.escape(NON_ASCII)):
        load_pem_file(path, NOW)


def test_non_ascii_in_a_jsonl_logs_base64_certificate(tmp_path: Path) -> None:
    b64 = base64.b64encode(DER).decode()
    path = tmp_path / "log.jsonl"
    path.write_text("\n" + json.dumps({"certificate": b64[:10] + "é" + b64[11:]}) + "\n")
    with pytest.raises(
        SourceError,
        match=re.escape(f"{path}:2: certificate is neither PEM nor base64 DER (non-ASCII"),
    ):
        load_issuance_log_facts(path, CTX)


def test_non_ascii_in_a_jsonl_logs_pem_certificate(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"certificate": _non_ascii(PEM_TEXT)}) + "\n")
    with pytest.raises(SourceError, match=re.escape(f"{path}:1: certificate 1 cannot be parsed")):
        load_issuance_log_facts(path, CTX)


def test_non_ascii_in_a_csv_logs_certificate(tmp_path: Path) -> None:
    b64 = base64.b64encode(DER).decode()
    path = tmp_path / "log.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([["certificate"], [b64[:10] + "é" + b64[11:]]])
    with pytest.raises(
        SourceError,
        match=re.escape(f"{path}:2: certificate is neither PEM nor base64 DER (non-ASCII"),
    ):
        load_csv_log(path, CTX)


def test_non_ascii_in_a_ccadb_pem_report(tmp_path: Path) -> None:
    path = tmp_path / "pems.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([[SHA256, PEM], [sha256_hex(DER), _non_ascii(PEM_TEXT)]])
    with pytest.raises(SourceError, match=re.escape(NON_ASCII)) as caught:
        load_ccadb_pems(path, CTX)
    assert str(caught.value).startswith(f"{path}:2")


def test_non_ascii_in_a_pkcs7_pem_bundle(tmp_path: Path) -> None:
    path = tmp_path / "bundle.p7b"
    path.write_text("-----BEGIN PKCS7-----\nMIIé" + "A" * 60 + "\n-----END PKCS7-----\n")
    with pytest.raises(SourceError, match=re.escape(f"{path}: not a PKCS#7 certificate bundle")):
        load_pkcs7(path, CTX)


# 4. Exactly one Common Name, read from the peer certificate itself.


class _Peer:
    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def _party(*common_names: str, gives: str = "jprs") -> str:
    cert = pem(client_certificate(new_ca(), *common_names))
    # gRPC's own property shows one CN whatever the certificate holds; it must not be trusted.
    context = _Peer({"x509_common_name": [gives.encode()], "x509_pem_cert": [cert]})
    return party_of(cast(grpc.ServicerContext, context), {"jprs": "jprs", "secom": "secom"})


def test_one_common_name_of_a_party_is_that_party() -> None:
    assert _party("secom", gives="secom") == "secom"


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (("jprs", "secom"), "has 2 Common Names 'jprs', 'secom', not exactly one"),
        (("secom", "jprs"), "has 2 Common Names 'secom', 'jprs', not exactly one"),
        (("mallory",), "TLS client certificate CN='mallory' is not the tls_identity of any party"),
    ],
)
def test_not_exactly_one_party_common_name_is_denied(names: tuple[str, ...], message: str) -> None:
    with pytest.raises(AccessDenied, match=re.escape(message)):
        _party(*names)


def test_no_peer_certificate_is_denied() -> None:
    context = _Peer({"x509_common_name": [b"jprs"]})
    with pytest.raises(AccessDenied, match=re.escape(NO_CERTIFICATE)):
        party_of(cast(grpc.ServicerContext, context), {"jprs": "jprs"})
