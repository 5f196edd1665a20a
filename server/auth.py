"""Who is calling: the party named by the TLS client certificate, never by a request field.

TLS only proves that the caller holds some certificate the federation CA issued; which party
that is comes from its Common Name, looked up in the configured `tls_identity` of each party.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc

from invsync.agent.exchange.rejections import AccessDenied


def peer_common_name(context: grpc.ServicerContext) -> str | None:
    """The authenticated client certificate's Common Name, or None without one."""
    auth = context.auth_context()
    found: bytes | Iterable[bytes] = auth.get("x509_common_name") or []
    names = [found] if isinstance(found, bytes) else list(found)
    if len(names) != 1:
        return None
    return names[0].decode("utf-8", "replace")


def party_of(context: grpc.ServicerContext, identities: Mapping[str, str]) -> str:
    """The party whose `tls_identity` is the caller's Common Name; AccessDenied names the
    Common Name when it belongs to no party, so an operator sees who was turned away."""
    name = peer_common_name(context)
    if name is None:
        raise AccessDenied("the TLS client certificate has no single Common Name")
    party = identities.get(name)
    if party is None:
        raise AccessDenied(
            f"TLS client certificate CN={name!r} is not the tls_identity of any party"
        )
    return party
