"""Client certificates the federation tooling never issues (several Common Names), signed by a
federation CA from `agent.exchange.pki`, for the server's "exactly one CN" rule; and a real
mutual-TLS handshake, to show that certificates the federation CA signs are accepted."""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from invsync.agent.exchange.pki import Issued


def handshake(
    ca: Path, server: tuple[Path, Path], client: tuple[Path, Path], server_name: str
) -> object:
    """A real mutual-TLS handshake on loopback: a server with (certificate, key) `server`
    requiring a client certificate from `ca`, dialled by `client` checking the server against
    `ca` under `server_name`. The server's view of the client certificate (`getpeercert`)."""
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(*server)
    serving.load_verify_locations(ca)
    serving.verify_mode = ssl.CERT_REQUIRED
    dialing = ssl.create_default_context(cafile=str(ca))
    dialing.load_cert_chain(*client)
    listener = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def accept() -> None:
        conn, _ = listener.accept()
        with serving.wrap_socket(conn, server_side=True) as tls:
            seen["peer"] = tls.getpeercert()
            tls.sendall(b"ok")

    thread = threading.Thread(target=accept)
    thread.start()
    with (
        socket.create_connection(listener.getsockname()) as raw,
        dialing.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(10)
    listener.close()
    return seen["peer"]


def client_certificate(ca: Issued, *common_names: str) -> Issued:
    """A TLS client certificate whose subject holds `common_names`, in order, issued by `ca`."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in common_names])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_names[0])]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def pem(issued: Issued) -> bytes:
    return issued.cert.public_bytes(serialization.Encoding.PEM)


def write(issued: Issued, directory: Path, name: str) -> tuple[Path, Path]:
    """The certificate and key as `name`.crt and `name`.key in `directory`."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(pem(issued))
    key.write_bytes(
        issued.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert, key
