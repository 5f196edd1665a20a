"""What one source read: its records and facts (`Facts`), and what a reader is given besides its
file (`SourceContext`). The fact types themselves are in `agent.model.facts`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from invsync.agent.model.facts import (
    AuditPeriod,
    AuditScopeEntry,
    CrlRevocation,
    Disclosure,
    Skipped,
)
from invsync.agent.model.record import CertInfo, CertRecord


@dataclass(frozen=True)
class Facts:
    records: tuple[CertRecord, ...] = ()
    disclosures: tuple[Disclosure, ...] = ()
    audit_scope: tuple[AuditScopeEntry, ...] = ()
    crl_revocations: tuple[CrlRevocation, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @staticmethod
    def combine(bundles: Iterable[Facts]) -> Facts:
        parts = list(bundles)
        return Facts(
            records=tuple(r for p in parts for r in p.records),
            disclosures=tuple(d for p in parts for d in p.disclosures),
            audit_scope=tuple(a for p in parts for a in p.audit_scope),
            crl_revocations=tuple(c for p in parts for c in p.crl_revocations),
            skipped=tuple(s for p in parts for s in p.skipped),
        )


Progress = Callable[[int, int | None], None]  # (done, total or None when unknown)


def _no_progress(done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class SourceContext:
    """What a reader may need beyond its file.

    `issuers`: CA certificates already known (the stored inventory and this import's
    certificates), against which CRL signatures are verified. `party_ca_spkis`: the party's own
    CA keys (SubjectPublicKeyInfo DER), for keeping only the CT entries they signed.
    `audit`: the audit a scope list belongs to, when given on the command line or in config.
    `skip_invalid`: leave out bad rows and report them in `Facts.skipped` instead of failing.
    """

    now: datetime
    issuers: Sequence[CertInfo] = ()
    party_ca_spkis: Sequence[bytes] = ()
    audit: AuditPeriod | None = None
    skip_invalid: bool = False
    progress: Progress = field(default=_no_progress)
