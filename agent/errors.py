"""The one error hierarchy of invsync.

Every error the user can meet is an `InvsyncError`. Each subclass carries a `hint`: what to do
next. The CLI catches only the base class and prints `diagnostics()`; foreign exceptions are
wrapped at the boundary with ``raise ... from e`` so the cause is kept. The exchange's
refusals, each with the rule it names, are in `agent.exchange.rejections`.
"""

from __future__ import annotations


class InvsyncError(Exception):
    """Base of every invsync error."""

    hint = "See `invsync --help`."

    def diagnostics(self) -> str:
        """The message and what to do next, for a person."""
        return f"error: {self}\nhint: {self.hint}"


class SourceError(InvsyncError):
    """A source file, line or entry could not be read. The message names it."""

    # Raised alike by `inventory import`, a collection and `reconcile`: none of them stores
    # anything it read once one source fails.
    hint = "Fix or remove the named file, line or entry, then run again; nothing read was stored."


class CertificateError(SourceError, ValueError):
    """Bytes that should be a DER certificate are not one `cryptography` accepts.

    Raised by `agent.model.record.parse_certificate` in place of whatever `cryptography` raised
    (kept as the cause). A ValueError too, so that every caller wrapping ValueError with its file,
    line or record index keeps doing so.
    """

    hint = "Fix or remove the named certificate, then run again; nothing read was stored."


class StoreError(InvsyncError):
    """The SQLite database is missing, corrupt, locked or of an unknown schema."""

    hint = (
        "Check the database path; restore it from backup if it is corrupt "
        "(it is never re-created silently)."
    )


class ConfigError(InvsyncError):
    """A configuration file is missing, unreadable or invalid. The message names the key."""

    hint = "Fix the named key in the configuration file; `invsync --help` lists the commands."


class KeyLoadError(InvsyncError):
    """A signing key could not be loaded or is of an unsupported type."""

    hint = (
        "Use an Ed25519 or ECDSA P-256/P-384 key in PEM "
        "(PKCS#8 private, SubjectPublicKeyInfo public)."
    )


class SignatureError(InvsyncError):
    """A signature is missing, malformed, or does not verify with a trusted key."""

    hint = (
        "Check that the signer's public key is the one pinned for it, "
        "and that the file was not altered."
    )


class TransportError(InvsyncError):
    """A gRPC call failed: the peer is down, refused us, or the deadline passed."""

    hint = "Check the server address, that the server runs, and the TLS files; then retry."
    # The rule the server named when it refused the call (agent.exchange.rejections), or None
    # when it did not answer with a refusal.
    rule: str | None = None


class ReportError(InvsyncError):
    """A report could not be built, verified or co-signed."""

    hint = (
        "Compare both parties' inventories with `invsync reconcile`; the message says what differs."
    )


# How many characters of a sender's text a message or log line quotes.
SHOWN_CHARS = 200


def bounded(text: object, limit: int = SHOWN_CHARS) -> str:
    """Text someone else sent, fit to quote: at most `limit` characters then "…", and every
    control or other unprintable character shown as its escape (a newline as ``\\n``), so a
    sender can neither flood a message, a log line or gRPC metadata nor forge a line of its own.
    """
    whole = str(text)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in whole[:limit])
    return shown[:limit] + "…" if len(shown) > limit or len(whole) > limit else shown
