"""The federation CA's key in a hardware module, plugged in as a command (`tls ca init
--key-command`; agent.exchange.ca_key). A real command stands in for the module: a Python
script run as a subprocess that signs with a key file the CA directory never holds
(tests/hsm_signer.py). What it signs completes a real mutual-TLS handshake and is accepted
by the server's CRL loader; a command that fails, prints garbage, signs with another key or
hangs is one error naming it, and nothing is recorded or written."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from invsync.agent.exchange.ca_key import KeyCommand
from invsync.server.client_crl import load_revoked
from tests.paths import ROOT
from tests.tls_certs import handshake
from tests.tls_cli import cert as _cert
from tests.tls_cli import cli as _cli
from tests.tls_cli import ok as _ok
from tests.tls_cli import refused as _refused

SIGNER = ROOT / "tests" / "hsm_signer.py"


def _write_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    return key


@dataclass(frozen=True)
class Module:
    """The stand-in hardware module: its key (a file outside the CA directory), the public key
    it exports, and a log of each signature it makes."""

    key: Path
    public: Path
    log: Path

    def command(self, mode: str = "sign", key: Path | None = None) -> str:
        words = [sys.executable, str(SIGNER), mode, str(key or self.key), str(self.log)]
        return shlex.join(words)

    def signatures(self) -> int:
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0


@pytest.fixture
def module(tmp_path: Path) -> Module:
    key = _write_key(tmp_path / "token" / "ca.key")
    public = tmp_path / "token" / "ca.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return Module(tmp_path / "token" / "ca.key", public, tmp_path / "token" / "signed.log")


@pytest.fixture
def hsm_ca(tmp_path: Path, module: Module) -> Path:
    ca = tmp_path / "operator" / "ca"
    _ok("ca", "init", ca, "--key-command", module.command(), "--public-key", module.public)
    return ca


def _request(tmp_path: Path, name: str) -> Path:
    _ok("request", tmp_path / name, "--name", name)
    return tmp_path / name / f"{name}.csr"


def _plug(ca: Path, line: str, timeout: float = 30.0) -> str:
    """Record another key command in `ca` (as an operator editing key-command.json would)."""
    command = KeyCommand.parse(line, timeout)
    (ca / "key-command.json").write_text(command.record())
    return command.shown


def test_init_keeps_no_key_and_the_module_signs_the_ca_certificate(
    tmp_path: Path, module: Module
) -> None:
    ca = tmp_path / "ca"
    command = module.command()
    out = _ok(
        "ca",
        "init",
        ca,
        "--key-command",
        command,
        "--public-key",
        module.public,
        "--key-timeout",
        "12.5",
    ).output
    assert sorted(p.name for p in ca.iterdir()) == ["ca.pem", "issued.jsonl", "key-command.json"]
    assert os.stat(ca / "key-command.json").st_mode & 0o777 == 0o600
    recorded = json.loads((ca / "key-command.json").read_text())
    assert recorded == {"command": shlex.split(command), "timeout_seconds": 12.5}
    cert = _cert(ca / "ca.pem")
    public = serialization.load_pem_public_key(module.public.read_bytes())
    assert cert.public_key() == public
    cert.verify_directly_issued_by(cert)  # self-signed, by the module's key
    assert module.signatures() == 1
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    expected = (
        f"wrote {ca / 'key-command.json'} (the CA signs with `{shlex.join(shlex.split(command))}`"
    )
    assert expected in out


def test_what_the_module_signs_passes_a_handshake_and_the_servers_crl_loader(
    tmp_path: Path, module: Module, hsm_ca: Path
) -> None:
    server_csr = _request(tmp_path, "exchange.example")
    client_csr = _request(tmp_path, "secom")
    _ok("sign", server_csr, "--ca", hsm_ca, "--server")
    _ok("sign", client_csr, "--ca", hsm_ca, "--client")
    server, client = server_csr.with_suffix(".crt"), client_csr.with_suffix(".crt")
    peer = handshake(
        hsm_ca / "ca.pem",
        (server, server_csr.with_suffix(".key")),
        (client, client_csr.with_suffix(".key")),
        "exchange.example",
    )
    assert isinstance(peer, dict) and peer["subject"] == ((("commonName", "secom"),),)
    serial = f"{_cert(client).serial_number:x}"
    out = _ok("revoke", serial, "--ca", hsm_ca).output
    assert "(CRL number 1)" in out
    revoked = load_revoked(hsm_ca / "crl.pem", hsm_ca / "ca.pem", "server.toml: tls.client_crl")
    assert revoked.holds(_cert(client)) and not revoked.holds(_cert(server))
    assert module.signatures() == 4  # the CA certificate, two certificates, the CRL


@pytest.mark.parametrize(
    ("mode", "timeout", "problem"),
    [
        ("fail", 30.0, "failed (exit status 3): C_Login: CKR_PIN_INCORRECT"),
        (
            "garbage",
            30.0,
            "printed no DER ECDSA signature (8 bytes: 'signed!\\n'); it must print the "
            "signature's DER and nothing else",
        ),
        ("wrong-key", 30.0, "signed with another key: its signature does not verify with the "),
        ("hang", 0.5, "gave no signature within 0.5 seconds; it was stopped"),
        ("detach", 0.5, "gave no signature within 0.5 seconds; it was stopped"),
        ("escape", 30.0, "failed (exit status 3): \\x1b[2JC_Login failed"),
    ],
)
@pytest.mark.parametrize("action", ["sign", "revoke"])
def test_a_key_command_that_does_not_sign_is_named_and_nothing_is_written(
    tmp_path: Path,
    module: Module,
    hsm_ca: Path,
    action: str,
    mode: str,
    timeout: float,
    problem: str,
) -> None:
    csr = _request(tmp_path, "secom")
    _ok("sign", csr, "--ca", hsm_ca, "--client", "--out", tmp_path / "first.crt")
    serial = f"{_cert(tmp_path / 'first.crt').serial_number:x}"
    register = (hsm_ca / "issued.jsonl").read_bytes()
    other = tmp_path / "other.key"
    _write_key(other)
    line = module.command("sign", other) if mode == "wrong-key" else module.command(mode)
    shown = _plug(hsm_ca, line, timeout)
    started = time.monotonic()
    if action == "sign":
        message = _refused("sign", csr, "--ca", hsm_ca, "--client")
    else:
        message = _refused("revoke", serial, "--ca", hsm_ca)
    assert time.monotonic() - started < 10  # a hung module is stopped, not waited for
    assert message.startswith(f"key command `{shown}` {problem}")
    if mode == "wrong-key":
        assert message.endswith(f"CA's public key ({hsm_ca / 'ca.pem'})")
    assert (hsm_ca / "issued.jsonl").read_bytes() == register
    assert not csr.with_suffix(".crt").exists()
    assert not (hsm_ca / "crl.pem").exists() and not (hsm_ca / "crl-number").exists()


def test_init_with_a_command_that_signs_with_another_key_leaves_nothing(
    tmp_path: Path, module: Module
) -> None:
    other = tmp_path / "other.key"
    _write_key(other)
    command = module.command("sign", other)
    message = _refused(
        "ca", "init", tmp_path / "ca", "--key-command", command, "--public-key", module.public
    )
    assert message == (
        f"key command `{shlex.join(shlex.split(command))}` signed with another key: its "
        f"signature does not verify with the CA's public key ({module.public})"
    )
    assert not (tmp_path / "ca").exists()


def test_a_program_that_cannot_run_is_named(tmp_path: Path, module: Module) -> None:
    message = _refused(
        "ca",
        "init",
        tmp_path / "ca",
        "--key-command",
        "/nonexistent/p11-sign",
        "--public-key",
        module.public,
    )
    assert (
        message == "key command `/nonexistent/p11-sign` cannot be run (No such file or directory)"
    )


def test_key_command_options_are_checked(tmp_path: Path, module: Module) -> None:
    ca = tmp_path / "ca"
    result = _cli("ca", "init", ca, "--key-command", module.command())
    assert str(result.exception) == "--key-command needs --public-key: the key's public half"
    result = _cli("ca", "init", ca, "--public-key", module.public)
    assert result.exit_code == 2 and "--public-key is for --key-command" in result.output
    assert _refused("ca", "init", ca, "--key-command", " ", "--public-key", module.public) == (
        "--key-command is empty: give the command that signs"
    )
    for seconds in ("0", "nan", "601"):
        message = _refused(
            "ca",
            "init",
            ca,
            "--key-command",
            module.command(),
            "--public-key",
            module.public,
            "--key-timeout",
            seconds,
        )
        assert message == (
            f"--key-timeout must be above 0 and at most 600 seconds, got {float(seconds)}"
        )
    rsa_public = tmp_path / "rsa.pub"
    rsa_public.write_bytes(
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert _refused(
        "ca", "init", ca, "--key-command", module.command(), "--public-key", rsa_public
    ) == (f"{rsa_public}: the CA's key must be an ECDSA P-256 or P-384 key")
    assert not ca.exists()


def test_a_damaged_or_doubled_key_record_is_named(tmp_path: Path, hsm_ca: Path) -> None:
    csr = _request(tmp_path, "secom")
    record = hsm_ca / "key-command.json"
    record.write_text('{"command": "openssl dgst", "timeout_seconds": 30}')
    assert _refused("sign", csr, "--ca", hsm_ca, "--client") == (
        f'{record}: "command" must be a list of words, the first the program'
    )
    os.chmod(record, 0o644)
    assert _refused("sign", csr, "--ca", hsm_ca, "--client") == (
        f"{record} is open to group or others (mode 0644); chmod 600 it"
    )
    os.chmod(record, 0o600)
    (hsm_ca / "ca.key").write_text("x")
    assert _refused("sign", csr, "--ca", hsm_ca, "--client") == (
        f"{hsm_ca} holds both ca.key and key-command.json; keep the one that signs"
    )


def test_a_key_command_failure_exits_3_with_the_hint(
    tmp_path: Path, module: Module, hsm_ca: Path
) -> None:
    csr = _request(tmp_path, "secom")
    _plug(hsm_ca, module.command("fail"))
    command = [sys.executable, "-m", "invsync.server.cli", "tls", "sign", str(csr)]
    command += ["--ca", str(hsm_ca), "--client"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    assert done.returncode == 3, done.stderr
    assert "failed (exit status 3): C_Login: CKR_PIN_INCORRECT" in done.stderr
    assert "Run the key command by hand" in done.stderr


def test_concurrent_revocations_on_one_ca_each_land_in_the_last_crl(
    tmp_path: Path, module: Module, hsm_ca: Path
) -> None:
    csr = _request(tmp_path, "secom")
    serials = []
    for n in range(4):
        out = tmp_path / f"secom-{n}.crt"
        _ok("sign", csr, "--ca", hsm_ca, "--client", "--out", out)
        serials.append(_cert(out).serial_number)
    # A slow module: without the CA's lock each revoke would read the register before the
    # others append to it, and the last CRL written would lack their serials.
    _plug(hsm_ca, module.command("slow"))
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "invsync.server.cli",
                "tls",
                "revoke",
                f"{serial:x}",
                "--ca",
                str(hsm_ca),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for serial in serials
    ]
    outputs = [run.communicate(timeout=60) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0, 0], outputs
    crl = x509.load_pem_x509_crl((hsm_ca / "crl.pem").read_bytes())
    assert sorted(entry.serial_number for entry in crl) == sorted(serials)
    numbers = sorted(int(out.split("(CRL number ")[1].split(")")[0]) for out, _ in outputs)
    assert numbers == [1, 2, 3, 4]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4
    assert (hsm_ca / "crl-number").read_text() == "4\n"
    assert any(
        "waiting for another `tls sign` or `tls revoke` on this CA" in err for _, err in outputs
    )
    lines = (hsm_ca / "issued.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line) for line in lines)


def test_the_modules_signature_is_over_the_exact_bytes_sent(
    tmp_path: Path, module: Module, hsm_ca: Path
) -> None:
    csr = _request(tmp_path, "secom")
    _ok("sign", csr, "--ca", hsm_ca, "--client")
    cert = _cert(csr.with_suffix(".crt"))
    public = serialization.load_pem_public_key(module.public.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    assert cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256


def test_the_guides_hardware_key_lines_run_as_written(tmp_path: Path) -> None:
    # The guide's module is `openssl` with a key file: a tool of every system the project runs
    # on (README, "Quick start"). Missing, this fails saying so; it is never skipped.
    assert shutil.which("openssl"), "the guide's hardware-key example runs openssl: install it"
    guide = (ROOT / "docs" / "operations.md").read_text()
    section = guide[guide.index("#### The CA key in a hardware module") : guide.index("### 2.3")]
    lines = section.split("```text\n")[1].split("```")[0]
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", lines],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    ca = tmp_path / "hsm-ca"
    assert sorted(p.name for p in ca.iterdir()) == [
        "ca.pem", "issued.jsonl", "key-command.json", "lock",
    ]  # fmt: skip
    assert json.loads((ca / "key-command.json").read_text())["command"][:3] == [
        "openssl", "dgst", "-sha256",
    ]  # fmt: skip
    root = _cert(ca / "ca.pem")
    root.verify_directly_issued_by(root)
    module_public = serialization.load_pem_public_key((tmp_path / "token/ca.pub.pem").read_bytes())
    assert root.public_key() == module_public
    _cert(tmp_path / "hsm-tls" / "localhost.crt").verify_directly_issued_by(root)
    assert "wrote hsm-tls/localhost.crt (server certificate CN=localhost" in done.stdout
