"""A subordinate's certificates of a key that another root certified too (a cross-sign).

A subordinate sends in each pairing, beside the certificates the root's keys signed, its other
certificates with the subject and key of one of those (agent.inventory.scope.subordinate_scope):
whoever holds the key can use them all, so a revocation for a key reason at one root concerns
the certificate another root issued. They are not the root's to list, disclose or audit, so
the reconciler takes them out of the subordinate's side and shows them to
`doppelganger-untracked` alone.

Which ones they are is decided by signature, never by the issuer name: a certificate the root
does not list, in a doppelganger group of more than one, that no key of the root's snapshot
header (`scope_issuer_spki`) signed. Only those few are verified; without a root header (plain
lists) nothing is taken out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

from invsync.agent.model.record import CertRecord
from invsync.agent.model.signatures import signed_by
from invsync.agent.model.snapshot import Side

Index = Mapping[str, CertRecord]


def other_issuers(root: Side, root_index: Index, sub_index: Index) -> tuple[Index, Index]:
    """(the subordinate's records of the pairing, those another issuer signed)."""
    if root.header is None or not root.header.scope_issuer_spki:
        return sub_index, {}
    candidates = _grouped_subordinate_only(root_index, sub_index)
    if not candidates:
        return sub_index, {}  # the common case: no group spans the sub's list alone
    keys = [load_der_public_key(spki) for spki in root.header.scope_issuer_spki]
    others = {r.sha256: r for r in candidates if not _signed_by_any(r, keys)}
    if not others:
        return sub_index, {}
    kept = {sha: r for sha, r in sub_index.items() if sha not in others}
    return kept, others


def _grouped_subordinate_only(root_index: Index, sub_index: Index) -> list[CertRecord]:
    """The records the subordinate lists and the root does not, in a group of more than one."""
    only = [sub_index[sha] for sha in sub_index.keys() - root_index.keys()]
    if not only:
        return []
    counts = Counter(r.info.doppelganger_key for r in root_index.values())
    counts.update(r.info.doppelganger_key for r in only)
    return sorted((r for r in only if counts[r.info.doppelganger_key] > 1), key=lambda r: r.sha256)


def _signed_by_any(record: CertRecord, keys: list[PublicKeyTypes]) -> bool:
    cert = x509.load_der_x509_certificate(record.info.der)
    return any(signed_by(cert, key) for key in keys)
