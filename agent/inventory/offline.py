"""The offline comparison's inventories: each side's certificates plus the shared public view.

CCADB reports, CRLs and audit scope lists describe certificates of both parties, so they are
read once and attached to both sides. CRLs come last: they are checked against the issuer keys
of everything read before them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from invsync.agent.inventory.assemble import Assembled, assemble
from invsync.agent.inventory.by_fingerprint import OfflineSide, compare_plain_lists
from invsync.agent.inventory.scope import issued_ca_certificates
from invsync.agent.model.bundle import Facts, SourceContext
from invsync.agent.model.record import CertInfo
from invsync.agent.sources.ct_client import CtFetch
from invsync.agent.sources.detect import AUDIT_SCOPE, CRL, PEM, parse_spec, sniff
from invsync.agent.sources.registry import kind_of, read_source

_PUBLIC_KINDS = (AUDIT_SCOPE, CRL)


@dataclass(frozen=True)
class PublicSources:
    ccadb: Sequence[str] = ()
    crls: Sequence[str] = ()
    audit_scope: Sequence[str] = ()


def compared_sides(
    root_specs: Sequence[str], sub_specs: Sequence[str], public: PublicSources, ctx: SourceContext
) -> tuple[OfflineSide, OfflineSide]:
    """Both sides in scope: by fingerprint first when both are plain PEM bundles and there is
    no public view (`agent.inventory.by_fingerprint`), else read in full."""
    if not (public.ccadb or public.crls or public.audit_scope):
        root_pems, sub_pems = _pem_paths(root_specs), _pem_paths(sub_specs)
        if root_pems and sub_pems:
            compared = compare_plain_lists(root_pems, sub_pems, ctx)
            if compared is not None:
                return compared
    root, sub = offline_sides(root_specs, sub_specs, public, ctx)
    return _in_scope(root), _in_scope(sub)


def _pem_paths(specs: Sequence[str]) -> list[Path]:
    """The specs' paths if every one names a PEM file by `pem:` or its `.pem` suffix, else
    none. Other names are left to the full reading: telling their kind means reading them."""
    paths = []
    for spec in specs:
        named, path = parse_spec(spec)
        if named not in (None, PEM) or (named is None and path.suffix.lower() != ".pem"):
            return []
        paths.append(path)
    return paths


def _in_scope(assembled: Assembled) -> OfflineSide:
    scoped = issued_ca_certificates(assembled.records)
    return OfflineSide(scoped, len(assembled.records), len(scoped), assembled.skipped)


def offline_sides(
    root_specs: Sequence[str], sub_specs: Sequence[str], public: PublicSources, ctx: SourceContext
) -> tuple[Assembled, Assembled]:
    root, sub = _side(root_specs, ctx), _side(sub_specs, ctx)
    shared = Facts.combine(
        [*(_read(s, ctx, "ccadb") for s in public.ccadb)]
        + [_read(s, ctx, AUDIT_SCOPE) for s in public.audit_scope]
    )
    issuers = [r.info for r in (*root.records, *sub.records, *shared.records)]
    crl_ctx = replace(ctx, issuers=issuers)
    crls = Facts.combine(_read(s, crl_ctx, CRL) for s in public.crls)
    view = Facts(
        disclosures=shared.disclosures,
        audit_scope=shared.audit_scope,
        crl_revocations=crls.crl_revocations,
        skipped=shared.skipped + crls.skipped,
    )
    return _assembled(root, view, issuers), _assembled(sub, view, issuers)


def _side(specs: Sequence[str], ctx: SourceContext) -> Facts:
    return Facts.combine(_read(spec, ctx, _certificate_kind(spec)) for spec in specs)


def _certificate_kind(spec: str) -> str:
    """A side lists certificates: a name that looks like an audit list or CRL is read by its
    content instead (the public view has options of its own)."""
    kind = kind_of(spec)
    named, path = parse_spec(spec)
    return sniff(path) if kind in _PUBLIC_KINDS and named is None else kind


def _read(spec: str, ctx: SourceContext, kind: str) -> Facts:
    read = read_source(spec, ctx, kind=kind)
    return read.facts if isinstance(read, CtFetch) else read


def _assembled(side: Facts, view: Facts, issuers: Sequence[CertInfo]) -> Assembled:
    return assemble(Facts.combine([side, view]), issuers=issuers)
