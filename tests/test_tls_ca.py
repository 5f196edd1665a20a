"""The federation CA that keeps its key (`tls ca init`, `tls request`, `tls sign`; issue 14):
each party's key is made on its own host and never read by the CA, the certificates the CA
signs chain to it and complete a real mutual-TLS handshake, every one is in the register, and
every bad request or CA directory is refused with a message naming the file."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from invsync.agent.errors import ConfigError
from invsync.agent.exchange import federation_ca
from invsync.agent.exchange.ca_lock import CaBusy, holding
from invsync.agent.exchange.federation_ca import FederationCaError, sign_request
from invsync.agent.files import write_atomically
from invsync.agent.model.der import element
from invsync.server.client_crl import load_revoked
from tests.paths import ROOT
from tests.tls_certs import handshake
from tests.tls_cli import cert as _cert
from tests.tls_cli import ok as _ok
from tests.tls_cli import refused as _refused

PEM_END = b"-----END CERTIFICATE REQUEST-----\n"


@pytest.fixture
def hosts(tmp_path: Path) -> dict[str, Path]:
    """The operator's CA and three hosts that each made their key and request on their own."""
    _ok("ca", "init", tmp_path / "operator" / "ca")
    dirs = {"ca": tmp_path / "operator" / "ca"}
    for name, host in (("exchange.example", "exchange"), ("secom", "secom"), ("jprs", "jprs")):
        _ok("request", tmp_path / host, "--name", name)
        dirs[host] = tmp_path / host
    return dirs


def _sign(hosts: dict[str, Path], host: str, name: str, *more: str) -> Path:
    _ok("sign", hosts[host] / f"{name}.csr", "--ca", hosts["ca"], *more)
    return hosts[host] / f"{name}.crt"


def test_ca_init_keeps_its_key_private_and_an_empty_register(tmp_path: Path) -> None:
    out = _ok("ca", "init", tmp_path / "ca", "--common-name", "Example Federation CA").output
    key, cert = tmp_path / "ca" / "ca.key", _cert(tmp_path / "ca" / "ca.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert (tmp_path / "ca" / "issued.jsonl").read_text() == ""
    assert cert.subject.rfc4514_string() == "CN=Example Federation CA"
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca and cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 1826
    assert f"wrote {key} (CA key, mode 600: keep it here, never send it)" in out


def test_requests_signed_by_the_ca_make_a_federation_no_key_left_its_host(
    hosts: dict[str, Path],
) -> None:
    server = _sign(hosts, "exchange", "exchange.example", "--server", "--days", "30")
    secom = _sign(hosts, "secom", "secom", "--client")
    jprs = _sign(hosts, "jprs", "jprs", "--client", "--days", "397")
    ca = _cert(hosts["ca"] / "ca.pem")
    for path, host, name, eku in (
        (server, "exchange", "exchange.example", ExtendedKeyUsageOID.SERVER_AUTH),
        (secom, "secom", "secom", ExtendedKeyUsageOID.CLIENT_AUTH),
        (jprs, "jprs", "jprs", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        cert = _cert(path)
        cert.verify_directly_issued_by(ca)
        assert cert.subject.rfc4514_string() == f"CN={name}"
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
        # The certificate is for the key its host made: the CA never had that key.
        key = serialization.load_pem_private_key((hosts[host] / f"{name}.key").read_bytes(), None)
        assert key.public_key() == cert.public_key()
        assert os.stat(hosts[host] / f"{name}.key").st_mode & 0o777 == 0o600
    listed = sorted(p.name for p in hosts["ca"].iterdir())
    assert listed == ["ca.key", "ca.pem", "issued.jsonl", "lock"]
    days = [(_cert(p).not_valid_after_utc - _cert(p).not_valid_before_utc) for p in (server, jprs)]
    assert [d.days for d in days] == [30, 397]  # from five minutes before signing
    sans = _cert(server).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["exchange.example"]


def test_the_signed_certificates_complete_a_mutual_tls_handshake(hosts: dict[str, Path]) -> None:
    server = _sign(hosts, "exchange", "exchange.example", "--server")
    client = _sign(hosts, "secom", "secom", "--client")
    ca = hosts["ca"] / "ca.pem"
    peer = handshake(
        ca,
        (server, hosts["exchange"] / "exchange.example.key"),
        (client, hosts["secom"] / "secom.key"),
        "exchange.example",
    )
    assert isinstance(peer, dict)
    assert peer["subject"] == ((("commonName", "secom"),),)


def test_every_certificate_signed_is_in_the_register_first(hosts: dict[str, Path]) -> None:
    paths = [_sign(hosts, "secom", "secom", "--client")]
    paths.append(_sign(hosts, "exchange", "exchange.example", "--server"))
    lines = (hosts["ca"] / "issued.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["common_name"], e["kind"]) for e in entries] == [
        ("secom", "client"),
        ("exchange.example", "server"),
    ]
    for entry, path in zip(entries, paths, strict=True):
        cert = _cert(path)
        assert entry["serial"] == f"{cert.serial_number:x}"
        assert entry["sha256"] == cert.fingerprint(hashes.SHA256()).hex().upper()
        assert entry["not_after"] == cert.not_valid_after_utc.isoformat()


def test_ca_init_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "notes.txt").write_text("x")
    message = _refused("ca", "init", tmp_path / "ca")
    assert message == f"{tmp_path / 'ca'} is not empty; refusing to write a CA into it"


def test_request_refuses_a_name_and_never_replaces_a_key(tmp_path: Path) -> None:
    assert _refused("request", tmp_path, "--name", "se com") == (
        "--name 'se com': use letters, digits, '.', '_' and '-' only"
    )
    _ok("request", tmp_path, "--name", "secom")
    before = (tmp_path / "secom.key").read_bytes()
    assert _refused("request", tmp_path, "--name", "secom") == (
        f"{tmp_path / 'secom.key'} exists; refusing to replace it"
    )
    assert (tmp_path / "secom.key").read_bytes() == before


def _csr(subject: x509.Name, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _cn(*names: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in names])


@pytest.mark.parametrize(
    ("csr", "problem"),
    [
        (b"not a request", "not a PEM certificate signing request"),
        (
            _csr(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SECOM"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "secom"),
                    ]
                ),
                ec.generate_private_key(ec.SECP256R1()),
            ),
            "its subject must be one Common Name alone, got 'CN=secom,O=SECOM'",
        ),
        (
            _csr(_cn("secom/../x"), ec.generate_private_key(ec.SECP256R1())),
            "Common Name 'secom/../x': use letters, digits, '.', '_' and '-' only",
        ),
        (
            _csr(_cn("secom"), rsa.generate_private_key(65537, 2048)),
            "an RSA key (2048 bits); make the request with `invsync tls request`",
        ),
        (
            _csr(_cn("secom"), ec.generate_private_key(ec.SECP521R1())),
            "its key is not a P-256 or P-384 key",
        ),
    ],
    ids=["not-pem", "two-attributes", "path-name", "rsa", "p521"],
)
def test_sign_refuses_a_request_naming_the_file(
    hosts: dict[str, Path], csr: bytes, problem: str
) -> None:
    path = hosts["secom"] / "odd.csr"
    path.write_bytes(csr)
    assert _refused("sign", path, "--ca", hosts["ca"], "--client").startswith(f"{path}: {problem}")
    assert (hosts["ca"] / "issued.jsonl").read_text() == ""  # nothing recorded
    assert not path.with_suffix(".crt").exists()


def test_sign_refuses_a_request_whose_signature_does_not_verify(hosts: dict[str, Path]) -> None:
    request = x509.load_pem_x509_csr((hosts["secom"] / "secom.csr").read_bytes())
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the signature's s, its last byte: still DER, no longer a signature
    path = hosts["secom"] / "tampered.csr"
    body = base64.encodebytes(bytes(der))
    path.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\n" + body + PEM_END)
    assert _refused("sign", path, "--ca", hosts["ca"], "--client") == (
        f"{path}: its signature does not verify with its own key"
    )


def test_sign_refuses_bad_days_an_open_ca_key_and_an_existing_certificate(
    hosts: dict[str, Path],
) -> None:
    csr, ca = hosts["secom"] / "secom.csr", hosts["ca"]
    assert _refused("sign", csr, "--ca", ca, "--client", "--days", "398") == (
        "--days must be within 1 and 397, got 398"
    )
    os.chmod(ca / "ca.key", 0o644)
    assert _refused("sign", csr, "--ca", ca, "--client") == (
        f"{ca / 'ca.key'} is open to group or others (mode 0644); chmod 600 it"
    )
    os.chmod(ca / "ca.key", 0o600)
    _ok("sign", csr, "--ca", ca, "--client")
    assert _refused("sign", csr, "--ca", ca, "--client") == (
        f"{hosts['secom'] / 'secom.crt'} exists; refusing to replace it"
    )
    (ca / "issued.jsonl").unlink()
    assert _refused("sign", csr, "--ca", ca, "--client", "--out", csr.with_name("b.crt")) == (
        f"{ca / 'issued.jsonl'}: missing; is {ca} a CA made by tls ca init?"
    )


def test_a_damaged_register_line_is_named(hosts: dict[str, Path]) -> None:
    (hosts["ca"] / "issued.jsonl").write_text('{"serial": "1f"}\n{"serial": \n')
    message = _refused("sign", hosts["secom"] / "secom.csr", "--ca", hosts["ca"], "--client")
    assert message.startswith(f"{hosts['ca'] / 'issued.jsonl'}:2: not a JSON object (")


def test_a_refusal_exits_2_with_its_message_and_hint(hosts: dict[str, Path]) -> None:
    command = [sys.executable, "-m", "invsync.server.cli", "tls", "sign"]
    command += [str(hosts["secom"] / "secom.csr"), "--ca", str(hosts["ca"]), "--client"]
    command += ["--days", "0"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 2, done.stderr
    assert "--days must be within 1 and 397, got 0" in done.stderr
    assert "invsync tls ca init" in done.stderr  # the hint: what to do next


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_as_a_request_give_a_certificate_or_a_named_refusal(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    ca = tmp_path_factory.mktemp("ca") / "ca"
    federation_ca.init_ca(ca)
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + data + b"\n" + PEM_END
    for request in (data, pem):
        try:
            sign_request(ca, request, "fuzz.csr", server=False)
        except FederationCaError as e:
            assert str(e).startswith("fuzz.csr: ")


def test_revoke_records_it_and_writes_a_crl_the_ca_signed(hosts: dict[str, Path]) -> None:
    secom = _cert(_sign(hosts, "secom", "secom", "--client"))
    _sign(hosts, "jprs", "jprs", "--client")
    serial = f"{secom.serial_number:x}"
    out = _ok("revoke", serial, "--ca", hosts["ca"], "--reason", "key compromise").output
    crl_path = hosts["ca"] / "crl.pem"
    assert f"serial {serial} (client secom) revoked" in out
    assert f"wrote {crl_path} (CRL number 1): copy it to the server as tls.client_crl" in out
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    ca = _cert(hosts["ca"] / "ca.pem")
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.subject
    assert [entry.serial_number for entry in crl] == [secom.serial_number]
    last = json.loads((hosts["ca"] / "issued.jsonl").read_text().splitlines()[-1])
    assert (last["serial"], last["reason"]) == (serial, "key compromise")
    # Again, spelt as OpenSSL prints it (leading zero, upper case, colons): only the CRL again.
    spelt = ":".join(f"{secom.serial_number:042X}"[i : i + 2] for i in range(0, 42, 2))
    lines = len((hosts["ca"] / "issued.jsonl").read_text().splitlines())
    again = _ok("revoke", spelt, "--ca", hosts["ca"]).output
    assert f"serial {serial} (client secom) was already revoked" in again
    assert len((hosts["ca"] / "issued.jsonl").read_text().splitlines()) == lines
    assert [e.serial_number for e in x509.load_pem_x509_crl(crl_path.read_bytes())] == [
        secom.serial_number
    ]
    assert _refused("revoke", "abc123", "--ca", hosts["ca"]) == (
        f"{hosts['ca'] / 'issued.jsonl'}: no certificate with serial abc123 was signed here"
    )
    assert _refused("revoke", "12:zz", "--ca", hosts["ca"]) == (
        "serial '12:zz' is not a hexadecimal number"
    )
    # A signature after a revocation still draws a serial of its own.
    _ok("sign", hosts["secom"] / "secom.csr", "--ca", hosts["ca"], "--client", "--out",
        hosts["secom"] / "secom-2.crt")  # fmt: skip
    assert _cert(hosts["secom"] / "secom-2.crt").serial_number != secom.serial_number


def test_the_server_reads_only_a_crl_its_client_ca_signed(tmp_path: Path) -> None:
    _ok("ca", "init", tmp_path / "ca")
    _ok("ca", "init", tmp_path / "other")
    _ok("request", tmp_path / "p", "--name", "secom")
    _ok("sign", tmp_path / "p" / "secom.csr", "--ca", tmp_path / "ca", "--client")
    serial = f"{_cert(tmp_path / 'p' / 'secom.crt').serial_number:x}"
    _ok("revoke", serial, "--ca", tmp_path / "ca")
    revoked = load_revoked(tmp_path / "ca" / "crl.pem", tmp_path / "ca" / "ca.pem", "s.toml: k")
    assert revoked.holds(_cert(tmp_path / "p" / "secom.crt"))
    with pytest.raises(ConfigError) as e:
        load_revoked(tmp_path / "ca" / "crl.pem", tmp_path / "other" / "ca.pem", "s.toml: k")
    assert str(e.value).startswith(f"s.toml: k: {tmp_path / 'ca' / 'crl.pem'} is not signed by")
    (tmp_path / "bad.pem").write_text("not a crl")
    with pytest.raises(ConfigError, match=r"^s\.toml: k: .*bad\.pem is not a PEM CRL \("):
        load_revoked(tmp_path / "bad.pem", tmp_path / "ca" / "ca.pem", "s.toml: k")


def test_a_revocation_whose_crl_could_not_be_written_is_completed_by_running_it_again(
    hosts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = _cert(_sign(hosts, "secom", "secom", "--client"))
    serial = f"{secom.serial_number:x}"

    crl = hosts["ca"] / "crl.pem"
    written = write_atomically

    def full(path: Path, data: bytes | str) -> None:
        if path == crl:
            raise OSError(28, "No space left on device")
        written(path, data)

    monkeypatch.setattr(federation_ca, "write_atomically", full)
    assert _refused("revoke", serial, "--ca", hosts["ca"]) == (
        f"{crl}: cannot write the CRL (No space left on device); the register holds the "
        "revocation: run the same `tls revoke` again to write it"
    )
    assert not crl.exists()
    monkeypatch.undo()
    _ok("revoke", serial, "--ca", hosts["ca"])
    assert [e.serial_number for e in x509.load_pem_x509_crl(crl.read_bytes())] == [
        secom.serial_number
    ]


def test_sign_into_a_missing_directory_is_refused_before_anything_is_recorded(
    hosts: dict[str, Path],
) -> None:
    out = hosts["secom"] / "nope" / "secom.crt"
    assert (
        _refused(
            "sign", hosts["secom"] / "secom.csr", "--ca", hosts["ca"], "--client", "--out", out
        )
        == f"{out}: its directory does not exist"
    )
    assert (hosts["ca"] / "issued.jsonl").read_text() == ""


def test_an_unreadable_ca_certificate_is_named(hosts: dict[str, Path]) -> None:
    (hosts["ca"] / "ca.pem").write_text("damaged")
    message = _refused("sign", hosts["secom"] / "secom.csr", "--ca", hosts["ca"], "--client")
    assert message.startswith(f"{hosts['ca'] / 'ca.pem'}: the CA certificate does not load (")


def test_a_certificate_ends_no_later_than_the_ca_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(federation_ca, "CA_VALIDITY", timedelta(days=10))
    _ok("ca", "init", tmp_path / "ca")
    _ok("request", tmp_path / "p", "--name", "secom")
    out = _ok("sign", tmp_path / "p" / "secom.csr", "--ca", tmp_path / "ca", "--client").output
    ca, cert = _cert(tmp_path / "ca" / "ca.pem"), _cert(tmp_path / "p" / "secom.crt")
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    assert (
        "its validity was cut short of 90 days to end with the CA certificate's; make a new CA "
        "before then"
    ) in out
    entry = json.loads((tmp_path / "ca" / "issued.jsonl").read_text())
    assert entry["not_after"] == ca.not_valid_after_utc.isoformat()
    # Within the CA's life, nothing is cut and nothing is said.
    _ok("request", tmp_path / "q", "--name", "jprs")
    out = _ok(
        "sign", tmp_path / "q" / "jprs.csr", "--ca", tmp_path / "ca", "--client", "--days", "9"
    ).output
    assert "cut short" not in out
    assert _cert(tmp_path / "q" / "jprs.crt").not_valid_after_utc < ca.not_valid_after_utc
    # A CA past its end signs nothing.
    later = datetime.now(UTC) + timedelta(days=11)
    with pytest.raises(FederationCaError) as refused:
        sign_request(
            tmp_path / "ca",
            (tmp_path / "q" / "jprs.csr").read_bytes(),
            "jprs.csr",
            server=False,
            now=later,
        )
    assert str(refused.value) == (
        f"{tmp_path / 'ca' / 'ca.pem'}: the CA certificate expired "
        f"{ca.not_valid_after_utc:%Y-%m-%d}; it signs nothing more: make a new CA with "
        "`tls ca init`"
    )


def test_certificates_and_crls_name_their_keys_and_crls_are_numbered(
    hosts: dict[str, Path],
) -> None:
    ca = _cert(hosts["ca"] / "ca.pem")
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ca_ski == x509.SubjectKeyIdentifier.from_public_key(ca.public_key())
    certs = [_cert(_sign(hosts, "secom", "secom", "--client"))]
    certs.append(_cert(_sign(hosts, "jprs", "jprs", "--client")))
    for cert in certs:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest
    numbers = []
    for serial in (certs[0].serial_number, certs[1].serial_number, certs[1].serial_number):
        _ok("revoke", f"{serial:x}", "--ca", hosts["ca"])
        crl = x509.load_pem_x509_crl((hosts["ca"] / "crl.pem").read_bytes())
        numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest
    assert numbers == [1, 2, 3]  # the third only signs the same list again: a newer CRL
    assert (hosts["ca"] / "crl-number").read_text() == "3\n"
    (hosts["ca"] / "crl-number").write_text("three\n")
    assert _refused("revoke", f"{certs[0].serial_number:x}", "--ca", hosts["ca"]) == (
        f"{hosts['ca'] / 'crl-number'}: not a CRL number (a decimal number), got 'three\\n'"
    )


def test_a_second_command_on_a_locked_ca_waits_then_is_refused_naming_the_lock(
    hosts: dict[str, Path],
) -> None:
    told: list[str] = []
    csr = (hosts["secom"] / "secom.csr").read_bytes()
    with holding(hosts["ca"], told.append), pytest.raises(CaBusy) as refused:
        sign_request(hosts["ca"], csr, "secom.csr", server=False, notice=told.append, lock_wait=0.3)
    assert str(refused.value) == (
        f"{hosts['ca'] / 'lock'}: another `tls sign` or `tls revoke` (pid {os.getpid()}) still "
        "holds this CA after 0.3 seconds; nothing was done"
    )
    assert told == [
        f"waiting for another `tls sign` or `tls revoke` on this CA (pid {os.getpid()})"
    ]
    assert (hosts["ca"] / "issued.jsonl").read_text() == ""
    # Released, the same call goes through.
    sign_request(hosts["ca"], csr, "secom.csr", server=False, lock_wait=0.3)


def test_a_register_line_cut_short_by_a_crash_is_removed_and_said(
    hosts: dict[str, Path],
) -> None:
    register = hosts["ca"] / "issued.jsonl"
    first = _cert(_sign(hosts, "secom", "secom", "--client"))
    whole = register.read_bytes()
    register.write_bytes(whole + b'{"common_name": "jprs", "kind": "cli')  # the crash
    result = _ok("sign", hosts["jprs"] / "jprs.csr", "--ca", hosts["ca"], "--client")
    assert (
        f"{register}:2: removed a line cut short by an interrupted write "
        '(\'{"common_name": "jprs", "kind": "cli\'); the certificate or revocation it began '
        "was never written out: if it was a revocation, run that `tls revoke` again"
    ) in result.stderr
    entries = [json.loads(line) for line in register.read_text().splitlines()]
    assert [e["common_name"] for e in entries] == ["secom", "jprs"]
    # A last line whole but for its newline is kept, and the next line starts on its own.
    register.write_bytes(register.read_bytes()[:-1])
    _ok("revoke", f"{first.serial_number:x}", "--ca", hosts["ca"])
    entries = [json.loads(line) for line in register.read_text().splitlines()]
    assert [e["serial"] for e in entries][-1] == f"{first.serial_number:x}"
    assert len(entries) == 3 and register.read_text().endswith("\n")


def test_a_serial_the_register_holds_is_drawn_again(
    hosts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    used = _cert(_sign(hosts, "secom", "secom", "--client")).serial_number
    draws = iter([used, used, used + 1])
    monkeypatch.setattr(x509, "random_serial_number", lambda: next(draws))
    signed = sign_request(
        hosts["ca"], (hosts["jprs"] / "jprs.csr").read_bytes(), "jprs.csr", server=False
    )
    assert signed.cert.serial_number == used + 1


def test_revoke_takes_the_certificate_file_of_this_ca_and_no_other(
    hosts: dict[str, Path], tmp_path: Path
) -> None:
    path = _sign(hosts, "jprs", "jprs", "--client")
    jprs = _cert(path)
    out = _ok("revoke", path, "--ca", hosts["ca"], "--reason", "superseded").output
    assert f"serial {jprs.serial_number:x} (client jprs) revoked" in out
    crl = x509.load_pem_x509_crl((hosts["ca"] / "crl.pem").read_bytes())
    assert [entry.serial_number for entry in crl] == [jprs.serial_number]
    # A certificate of another CA, even one whose serial this CA signed, is not revoked here.
    _ok("ca", "init", tmp_path / "other")
    _ok("request", tmp_path / "x", "--name", "jprs")
    _ok("sign", tmp_path / "x" / "jprs.csr", "--ca", tmp_path / "other", "--client")
    other = _cert(tmp_path / "x" / "jprs.crt")
    fingerprint = other.fingerprint(hashes.SHA256()).hex().upper()
    assert _refused("revoke", tmp_path / "x" / "jprs.crt", "--ca", hosts["ca"]) == (
        f"{tmp_path / 'x' / 'jprs.crt'}: certificate serial {other.serial_number:x} "
        f"(SHA-256 {fingerprint[:16]}...) was not signed by the CA in {hosts['ca']} "
        f"(not in {hosts['ca'] / 'issued.jsonl'})"
    )
    (tmp_path / "junk.pem").write_text("not a certificate")
    assert _refused("revoke", tmp_path / "junk.pem", "--ca", hosts["ca"]).startswith(
        f"{tmp_path / 'junk.pem'}: not a readable PEM certificate ("
    )


def _signed_request(name_der: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A PKCS#10 request its own key signed, naming itself as `name_der` says: the parts
    `cryptography`'s builder refuses to make, and a hostile requester can."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = element(0x30, bytes([2, 1, 0]) + name_der + spki + bytes([0xA0, 0]))
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    algorithm = element(0x30, element(0x06, bytes.fromhex("2a8648ce3d040302")))
    der = element(0x30, info + algorithm + element(0x03, b"\x00" + signature))
    return x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)


def _common_name(tag: int, value: bytes) -> bytes:
    atv = element(0x30, element(0x06, bytes.fromhex("550403")) + element(tag, value))
    return element(0x30, element(0x31, atv))


@pytest.mark.parametrize(
    ("tag", "value"),
    [(0x02, b"\x01"), (0x03, b"\x00nii"), (0x0C, b"\xff\xfe")],
    ids=["integer", "bit-string", "bad-utf8"],
)
def test_a_signed_request_with_an_unreadable_subject_is_refused_by_name(
    hosts: dict[str, Path], tag: int, value: bytes
) -> None:
    pem = _signed_request(_common_name(tag, value), ec.generate_private_key(ec.SECP256R1()))
    (hosts["jprs"] / "odd.csr").write_bytes(pem)
    refused = _refused("sign", hosts["jprs"] / "odd.csr", "--ca", hosts["ca"], "--client")
    assert refused.startswith(f"{hosts['jprs'] / 'odd.csr'}: its subject cannot be read (")
    assert not (hosts["jprs"] / "odd.crt").exists()


def test_a_request_with_an_unknown_curve_is_refused_by_name(hosts: dict[str, Path]) -> None:
    pem = _signed_request(_common_name(0x0C, b"nii"), ec.generate_private_key(ec.SECP256R1()))
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    p256 = bytes.fromhex("2a8648ce3d030107")
    odd = der.replace(p256, bytes.fromhex("2a8648ce3d030109"), 1)
    (hosts["jprs"] / "odd.csr").write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(odd)
        + b"-----END CERTIFICATE REQUEST-----\n"
    )
    refused = _refused("sign", hosts["jprs"] / "odd.csr", "--ca", hosts["ca"], "--client")
    assert refused.startswith(f"{hosts['jprs'] / 'odd.csr'}: its key or signature cannot be read (")
