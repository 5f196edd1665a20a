"""`profile-deviation`: a live CA certificate that differs from its operator's declared profile.

The root cause of Mozilla bug 1695993: 9-byte serials where JPRS declared 16 bytes, so the pair
was reissued and the originals forgotten. Profiles come from either side's snapshot header: a
profile for operator X applies to the certificates X operates, and a profile the subordinate
declares for itself to every certificate it lists. The root signed the certificate, so the root
must act (revoke and reissue, or correct the declaration with the subordinate). Revoked and
expired certificates are not judged: nothing can be done about them any more. Nor is a
certificate issued (notBefore) outside the profile's `effective_from`/`effective_until`: a
profile changes from a date on, and binds nothing issued before it.
"""

from __future__ import annotations

from collections.abc import Iterable

from invsync.agent.model.findings import PROFILE_DEVIATION, Finding, make_finding
from invsync.agent.model.profiles import OperatorProfile
from invsync.agent.model.record import CertInfo
from invsync.agent.reconcile.rules.context import Context


def check(ctx: Context) -> Iterable[Finding]:
    declared = ctx.profiles()
    if not declared:
        return
    for sha, record in ctx.union().items():
        if not ctx.live(record):
            continue
        operator = ctx.operator_of(sha)
        declarers: dict[str, set[str]] = {}
        for declarer, profile in declared:
            if profile.operator == operator or (
                sha in ctx.sub and profile.operator == ctx.sub_party
            ):
                for deviation in deviations_from(record.info, profile):
                    declarers.setdefault(deviation, set()).add(declarer)
        deviations = [
            f"{deviation} (declared by {' and '.join(sorted(parties))})"
            for deviation, parties in sorted(declarers.items())
        ]
        if deviations:
            yield make_finding(
                PROFILE_DEVIATION,
                sha256=sha,
                subject=record.info.subject,
                party=ctx.root_party,
                message=f"deviates from its profile: {'; '.join(deviations)}",
            )


def deviations_from(info: CertInfo, profile: OperatorProfile) -> list[str]:
    """How the certificate differs from the profile, one phrase per difference; none for a
    certificate issued outside the profile's effective dates."""
    if not profile.applies_to(info.not_before):
        return []
    found = []
    if profile.serial_bytes and not _serial_matches(info, profile.serial_bytes):
        found.append(f"serial is {info.serial_bytes} bytes, not {profile.serial_bytes}")
    if profile.allowed_ekus and not info.extensions_error:
        outside = [eku for eku in info.ekus if eku not in profile.allowed_ekus]
        if not info.ekus:
            found.append(
                "no EKU extension (any usage), not only " + ", ".join(profile.allowed_ekus)
            )
        elif outside:
            found.append(f"EKUs {', '.join(outside)} are not allowed")
    days = (info.not_after - info.not_before).days
    if profile.max_validity_days and days > profile.max_validity_days:
        found.append(f"valid {days} days, more than {profile.max_validity_days}")
    return found


def _serial_matches(info: CertInfo, declared: int) -> bool:
    # A serial's DER content gets a leading 00 when its first bit is set (it is a positive
    # INTEGER), so a declared 16-byte random serial is 17 bytes half the time.
    sign_byte = info.serial_bytes == declared + 1 and info.serial_hex.startswith("00")
    return info.serial_bytes == declared or sign_byte
