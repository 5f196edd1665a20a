"""The public half of `status-mismatch`: each party's records against its CRLs and CCADB.

A CRL entry is verified evidence (its signature checked against the issuer key when it was
imported); the party's own claim is what its issuance log or configuration says. CCADB's
"Revocation Status" is what root programs see.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from invsync.agent.model.facts import Disclosure
from invsync.agent.model.findings import (
    BR_REVOCATION,
    MOZILLA_DISCLOSURE,
    STATUS_MISMATCH,
    Finding,
    Severity,
    make_finding,
)
from invsync.agent.model.record import CertRecord, Revocation
from invsync.agent.reconcile.rules.context import (
    CRL_SOURCE,
    DATE_TOLERANCE,
    DISCLOSURE_DAYS,
    REVOCATION_DAYS,
    Context,
    midnight,
    revocation_at,
    revocation_text,
    revocations_differ,
)

CCADB_REVOKED = "Revoked"


def _sides(ctx: Context) -> list[tuple[str, Collection[CertRecord]]]:
    """Each party's records that state a revocation or carry CRL evidence: the others can
    neither contribute a CRL nor disagree with one."""
    sides = ((ctx.root_party, ctx.root), (ctx.sub_party, ctx.sub))
    return [(party, stating(ctx, side).values()) for party, side in sides]


def stating(ctx: Context, side: Mapping[str, CertRecord]) -> dict[str, CertRecord]:
    """The side's records that state a revocation or carry CRL evidence, by certificate."""
    # Each such record once, found without walking the side again: the CRLs of an issuer are
    # gathered as a set and the findings are sorted at the end, so the order does not matter.
    found = {r.sha256: r for r in ctx.having(side, "revocation")}
    found.update((r.sha256, r) for r in ctx.having(side, "revocation_evidence"))
    return found


def against_crls(ctx: Context) -> Iterable[Finding]:
    """Each party's own claim against the CRL entries it imported.

    Listed in a CRL but not revoked in the party's own records: warning for that party (the
    certificate is revoked; its inventory does not say so). Revoked by the party but absent from
    the CRL of an issuer whose CRL it imported: error for the root, which must publish it, due 7
    days after the revocation (an unpublished revocation protects no relying party). Both, but
    more than a day apart or for other reasons: warning for the root.
    """
    for party, records in _sides(ctx):
        crls: dict[tuple[bytes, str | None], set[str]] = {}
        for record in records:
            for claim in _crl_claims(ctx, record):
                crls.setdefault(issuer_of(record), set()).add(claim.source)
        for record in records:
            issuer_crls = crls.get(issuer_of(record)) if crls else None
            yield from _against_crl(ctx, party, record, sorted(issuer_crls) if issuer_crls else [])


def _against_crl(
    ctx: Context, party: str, record: CertRecord, issuer_crls: list[str]
) -> Iterable[Finding]:
    """`issuer_crls`: the CRLs of the record's issuer this party imported (known from the
    entries they contributed: a CRL that revokes none of the party's records is invisible)."""
    own, crl = _own_claim(ctx, record), _crl_claims(ctx, record)
    if crl and own is None:
        yield _finding(
            ctx,
            record,
            party,
            Severity.WARNING,
            f"{crl[0].source} revokes it on {revocation_text(crl[0])}, "
            f"{party} lists it as not revoked",
        )
    elif own is not None and not crl and issuer_crls:
        yield _finding(
            ctx,
            record,
            ctx.root_party,
            Severity.ERROR,
            f"{party} lists it as revoked on {revocation_text(own)}, but its "
            f"issuer's CRL {', '.join(issuer_crls)} does not list it",
            due=own.revoked_at + REVOCATION_DAYS,
        )
    elif own is not None and crl and revocations_differ(own, crl[0]):
        yield _finding(
            ctx,
            record,
            ctx.root_party,
            Severity.WARNING,
            f"{party} lists it as revoked on {revocation_text(own)}, "
            f"{crl[0].source} on {revocation_text(crl[0])}",
        )


def issuer_of(record: CertRecord) -> tuple[bytes, str | None]:
    return record.info.issuer_der, record.info.aki


def _own_claim(ctx: Context, record: CertRecord) -> Revocation | None:
    """The party's own revocation (assembly fills `revocation` from a CRL when it had none)."""
    own = revocation_at(record, ctx.at)
    return None if own is None or own.source.startswith(CRL_SOURCE) else own


def _crl_claims(ctx: Context, record: CertRecord) -> list[Revocation]:
    if not record.revocation_evidence:
        return []  # most records: no list to build and sort, twice per record and side
    claims = [
        claim
        for claim in record.revocation_evidence
        if claim.source.startswith(CRL_SOURCE) and claim.revoked_at <= ctx.at
    ]
    return sorted(claims, key=lambda claim: (claim.revoked_at, claim.source))


def against_ccadb(ctx: Context) -> Iterable[Finding]:
    """Each party's record against CCADB's revocation status, one comparison per certificate.

    CCADB says revoked, a party does not: error for that party, due 7 days after CCADB's date
    (BR 4.9.1.2). A party says revoked, CCADB does not: error for the root, whose CA owner
    record discloses it, due 7 days after the revocation (Mozilla Root Store Policy 5.3.2). Both,
    but over a day apart or for other reasons (where CCADB gives them): warning for the root.
    """
    # The root's disclosure when it has one, else the subordinate's (records_of's order).
    for sha, disclosure in ctx.disclosures().items():
        yield from _against_disclosure(ctx, ctx.record(sha), disclosure)


def _against_disclosure(
    ctx: Context, record: CertRecord, disclosure: Disclosure
) -> Iterable[Finding]:
    ccadb = _ccadb_revocation(ctx, disclosure)
    claims = {p: revocation_at(r, ctx.at) for p, r in _holders(ctx, record.sha256)}
    if ccadb is not None:
        for party, claim in claims.items():
            if claim is None:
                yield _finding(
                    ctx,
                    record,
                    party,
                    Severity.ERROR,
                    f"CCADB lists it as revoked{_ccadb_text(disclosure)}, "
                    f"{party} lists it as not revoked",
                    due=ccadb.revoked_at + REVOCATION_DAYS if disclosure.revocation_date else None,
                    policy=BR_REVOCATION,
                )
            elif _differ_from_ccadb(claim, disclosure):
                yield _finding(
                    ctx,
                    record,
                    ctx.root_party,
                    Severity.WARNING,
                    f"{party} lists it as revoked on {revocation_text(claim)}, "
                    f"CCADB as revoked{_ccadb_text(disclosure)}",
                )
        return
    revokers = {p: c for p, c in claims.items() if c is not None}
    if revokers:
        first = min(revokers.values(), key=lambda claim: claim.revoked_at)
        yield _finding(
            ctx,
            record,
            ctx.root_party,
            Severity.ERROR,
            f"{' and '.join(revokers)} list{'s' if len(revokers) == 1 else ''} "
            f"it as revoked on {revocation_text(first)}, CCADB lists it as "
            f"{disclosure.revocation_status or 'not revoked'}",
            due=first.revoked_at + DISCLOSURE_DAYS,
            policy=MOZILLA_DISCLOSURE,
        )


def _holders(ctx: Context, sha: str) -> list[tuple[str, CertRecord]]:
    sides = ((ctx.root_party, ctx.root), (ctx.sub_party, ctx.sub))
    return [(party, side[sha]) for party, side in sides if sha in side]


def _ccadb_revocation(ctx: Context, disclosure: Disclosure) -> Revocation | None:
    """CCADB's revocation as of `at`; one without a date counts (the report may omit dates)."""
    if disclosure.revocation_status != CCADB_REVOKED:
        return None
    day = disclosure.revocation_date
    revoked_at = midnight(day) if day is not None else ctx.at
    if revoked_at > ctx.at:
        return None
    return Revocation(revoked_at, disclosure.revocation_reason, f"ccadb:{disclosure.source}")


def _ccadb_text(disclosure: Disclosure) -> str:
    day = disclosure.revocation_date
    reason = disclosure.revocation_reason
    when = f" on {day:%Y-%m-%d}" if day is not None else ""
    return f"{when} ({reason})" if reason else when


def _differ_from_ccadb(claim: Revocation, disclosure: Disclosure) -> bool:
    """Only what CCADB states is compared: its date to the day, its reason when given."""
    day = disclosure.revocation_date
    if day is not None and abs(midnight(day) - midnight(claim.revoked_at.date())) > DATE_TOLERANCE:
        return True
    return bool(disclosure.revocation_reason) and disclosure.revocation_reason != claim.reason


def _finding(
    ctx: Context,
    record: CertRecord,
    party: str,
    severity: Severity,
    message: str,
    *,
    due: datetime | None = None,
    policy: str | None = None,
) -> Finding:
    return make_finding(
        STATUS_MISMATCH,
        sha256=record.sha256,
        subject=record.info.subject,
        party=party,
        severity=severity,
        message=message,
        due=due,
        policy=policy,
    )
