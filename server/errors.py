"""Errors of the exchange service that are not snapshot acceptance rules."""

from __future__ import annotations

from invsync.agent.errors import InvsyncError


class AccessDenied(InvsyncError):
    """The caller's TLS identity may not see or change what it asked for."""

    grpc_status = "PERMISSION_DENIED"
    hint = "Check the party's tls_identity and pairings in the server configuration."


class NotFound(InvsyncError):
    """No snapshot or report of that pairing yet."""

    grpc_status = "NOT_FOUND"
    hint = "Wait for both parties to push a snapshot of the pairing, then ask again."


class BadReportSignature(InvsyncError):
    """A party's signature on a report does not verify with its pinned key."""

    grpc_status = "PERMISSION_DENIED"
    hint = "Sign the exact report body with the party's pinned signing key."
