"""Who is calling: the party named by the TLS client certificate, never by a request field.

TLS only proves that the caller holds some certificate the federation CA issued; which party
that is comes from its Common Name, looked up in the configured `tls_identity` of each party.
The Common Name is read from the peer certificate itself (`x509_pem_cert`), not from gRPC's
`x509_common_name`: that property holds one CN only, so `CN=jprs, CN=secom` would pass as jprs.
A certificate must carry exactly one Common Name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from cryptography import x509
from cryptography.x509.oid import NameOID

from invsync.agent.errors import bounded
from invsync.agent.exchange.rejections import AccessDenied
from invsync.server.client_crl import Revoked

NONE_REVOKED = Revoked()

NO_CERTIFICATE = "the TLS peer presented no client certificate"


def peer_certificate(context: grpc.ServicerContext) -> x509.Certificate | None:
    """The authenticated client certificate; None when the peer presented none. AccessDenied
    when it is not a certificate at all."""
    auth = context.auth_context()
    found: bytes | Iterable[bytes] = auth.get("x509_pem_cert") or []
    pems = [found] if isinstance(found, bytes) else list(found)
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(pems[0])
    except ValueError as e:
        raise AccessDenied(f"the TLS client certificate cannot be read ({e})") from e


def common_names(cert: x509.Certificate) -> list[str]:
    """Every Common Name of the certificate's subject, in order."""
    try:
        attributes = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError as e:
        raise AccessDenied(f"the TLS client certificate cannot be read ({e})") from e
    return [
        a.value if isinstance(a.value, str) else a.value.decode("utf-8", "replace")
        for a in attributes
    ]


def party_of(
    context: grpc.ServicerContext, identities: Mapping[str, str], revoked: Revoked = NONE_REVOKED
) -> str:
    """The party whose `tls_identity` is the caller's one Common Name; AccessDenied names the
    Common Name(s) when they are not exactly one that belongs to a party, or when the
    certificate is on the federation CA's CRL (`revoked`), so an operator sees who was turned
    away."""
    cert = peer_certificate(context)
    if cert is None:
        raise AccessDenied(NO_CERTIFICATE)
    names = common_names(cert)
    if len(names) != 1:
        shown = "".join(f" '{bounded(n)}'" for n in names[:1]) + "".join(
            f", '{bounded(n)}'" for n in names[1:]
        )
        raise AccessDenied(
            f"the TLS client certificate has {len(names)} Common Names{shown}, not exactly one"
        )
    if revoked.holds(cert):
        raise AccessDenied(
            f"TLS client certificate CN='{bounded(names[0])}' (serial {cert.serial_number:x}) "
            f"is revoked ({revoked.source})"
        )
    party = identities.get(names[0])
    if party is None:
        raise AccessDenied(
            f"TLS client certificate CN='{bounded(names[0])}' is not the tls_identity of any party"
        )
    return party
