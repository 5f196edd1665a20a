"""The client certificates the federation CA revoked (`tls.client_crl`, issue 14).

gRPC's Python server credentials take no CRL, so revocation is checked where the caller is
named (server.auth): a call whose client certificate's (issuer, serial) is on the CRL is
refused like any unknown certificate, and the refusal says it was revoked. The CRL is read at
start and on SIGHUP (server.daemon), and must be signed by a CA of `tls.client_ca`: a CRL
from anyone else would let them lock parties out. One past its nextUpdate is still applied
(what it revokes stays revoked), with a warning that the operator should sign a new one
(`invsync tls revoke` writes it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from invsync.agent.errors import ConfigError

log = logging.getLogger("invsync.server")


@dataclass(frozen=True)
class Revoked:
    """The (issuer DER, serial) of every revoked client certificate, and where they were read."""

    serials: frozenset[tuple[bytes, int]] = frozenset()
    source: str = ""

    def holds(self, cert: x509.Certificate) -> bool:
        return (cert.issuer.public_bytes(), cert.serial_number) in self.serials


def load_revoked(crl_path: Path, ca_path: Path, where: str, now: datetime | None = None) -> Revoked:
    """The CRL at `crl_path`, once a CA certificate of `ca_path` verifies its signature;
    ConfigError naming `where` (the configuration key) otherwise."""
    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {crl_path} is not a PEM CRL ({e})") from e
    try:
        cas = x509.load_pem_x509_certificates(ca_path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: tls.client_ca {ca_path} does not load ({e})") from e
    if not any(
        ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
        for ca in cas
    ):
        raise ConfigError(
            f"{where}: {crl_path} is not signed by a CA of tls.client_ca ({ca_path}); "
            "use the CRL `invsync tls revoke` wrote"
        )
    when = now or datetime.now(UTC)
    if crl.next_update_utc is not None and crl.next_update_utc < when:
        log.warning(
            "%s: %s was due for renewal at %s; its revocations still apply. Run `invsync tls "
            "revoke` again for one of its serials to write a new one",
            where,
            crl_path,
            crl.next_update_utc.isoformat(),
        )
    issuer = crl.issuer.public_bytes()
    return Revoked(frozenset((issuer, entry.serial_number) for entry in crl), str(crl_path))
