"""A party's TLS key and its certificate signing request, made on the party's own host (issue 14).

The key is written 0600 and never leaves the host; the request (public: the key's public half,
the name asked for, a signature proving the key is held) is what the party sends to the
exchange operator, whose federation CA signs it (agent.exchange.federation_ca). The request
names the party's tls_identity (or the server's DNS name) as its one Common Name and nothing
else: the CA sets every extension itself.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.pki import PLAIN_NAME, write_private_key
from invsync.agent.files import fsync_directory


class TlsRequestError(InvsyncError):
    """A key and request could not be made. The message says which name or file."""

    hint = (
        "Choose a name of letters, digits, '.', '_' and '-', and a directory without that "
        "name's files."
    )


def make_request(directory: Path, name: str) -> tuple[Path, Path]:
    """NAME.key (0600, new) and NAME.csr in `directory`: the key, and the request to send."""
    if not PLAIN_NAME.fullmatch(name):
        raise TlsRequestError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
    directory.mkdir(parents=True, exist_ok=True)
    key_path, csr_path = directory / f"{name}.key", directory / f"{name}.csr"
    for path in (key_path, csr_path):
        if path.exists():
            raise TlsRequestError(f"{path} exists; refusing to replace it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    write_private_key(key_path, key, exclusive=True)
    try:
        csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    except OSError as e:
        key_path.unlink()  # a key without its request: the next try makes both again
        raise TlsRequestError(f"{csr_path}: cannot write the request ({e.strerror})") from e
    fsync_directory(directory)
    return key_path, csr_path
