"""Who is calling: the party named by the TLS client certificate, never by a request field.

TLS only proves that the caller holds some certificate the federation CA issued; which party
that is comes from its Common Name, looked up in the configured `tls_identity` of each party.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc


def peer_common_name(context: grpc.ServicerContext) -> str | None:
    """The authenticated client certificate's Common Name, or None without one."""
    auth = context.auth_context()
    found: bytes | Iterable[bytes] = auth.get("x509_common_name") or []
    names = [found] if isinstance(found, bytes) else list(found)
    if len(names) != 1:
        return None
    return names[0].decode("utf-8", "replace")


def party_of(context: grpc.ServicerContext, identities: Mapping[str, str]) -> str | None:
    """The party whose `tls_identity` is the caller's Common Name, or None if none is."""
    name = peer_common_name(context)
    return None if name is None else identities.get(name)
