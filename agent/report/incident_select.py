"""Which findings of a report an incident covers: named one by one (CODE:SHA256 or a SHA-256
prefix), every finding of a certificate, or every open error. Several findings make one
incident, as a CA files it: one matter, every certificate and failure of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from invsync.agent.errors import ReportError
from invsync.agent.model.findings import Finding, Severity


class SelectionError(ReportError):
    """A reference names no finding of the report, or more than one."""

    hint = (
        "Name a finding as CODE:SHA256 or a SHA-256 prefix (`invsync report show` lists them), "
        "every finding of a certificate with --certificate, every open error with --open-errors."
    )


def pick(reference: str, findings: Sequence[Finding]) -> Finding:
    """The finding `reference` names: CODE:SHA256-or-prefix, or a SHA-256 prefix alone."""
    code, sep, sha = reference.rpartition(":")
    sha = sha.upper()
    found = [f for f in findings if f.sha256.startswith(sha) and (not sep or f.code == code)]
    if len(found) != 1:
        listed = ", ".join(f"{f.code}:{f.sha256[:16]}" for f in found) or "none"
        raise SelectionError(f"{reference!r} names {len(found)} findings of the report ({listed})")
    return found[0]


def of_certificate(prefix: str, findings: Sequence[Finding]) -> list[Finding]:
    """Every finding about the one certificate whose SHA-256 starts with `prefix`."""
    shas = sorted({f.sha256 for f in findings if f.sha256 and f.sha256.startswith(prefix.upper())})
    if len(shas) != 1:
        listed = ", ".join(sha[:16] for sha in shas) or "none"
        raise SelectionError(
            f"--certificate {prefix!r} names {len(shas)} certificates with findings ({listed})"
        )
    return [f for f in findings if f.sha256 == shas[0]]


def open_errors(findings: Iterable[Finding]) -> list[Finding]:
    """Every error-severity finding no party acknowledged."""
    return [f for f in findings if f.severity is Severity.ERROR and f.acknowledgement is None]


def select(
    findings: Sequence[Finding],
    references: Iterable[str] = (),
    certificates: Iterable[str] = (),
    errors: bool = False,
) -> tuple[Finding, ...]:
    """The findings the three kinds of selection name together, once each, in report order."""
    chosen = [pick(reference, findings) for reference in references]
    chosen += [f for prefix in certificates for f in of_certificate(prefix, findings)]
    if errors:
        taken = open_errors(findings)
        if not taken:
            raise SelectionError("--open-errors: the report has no unacknowledged error finding")
        chosen += taken
    if not chosen:
        raise SelectionError("no finding named")
    return tuple(f for f in findings if any(f is c for c in chosen))
