"""Two plain PEM lists compared by fingerprint first, each certificate decoded only if a rule
can need it (issue 13: `invsync reconcile` of 1,000,000 against 1,000,000).

With no public view (no CCADB report, CRL or audit list) and only PEM bundles on both sides,
the records carry nothing but their certificates, so only three rules can speak:
`missing-at-*` about a certificate one side lacks, `doppelganger-untracked` about a group
sharing subject and key with such a certificate, and `doppelganger-inconsistent` about a group
whose members differ in technical constraint (which the certificates alone show). Every other
rule needs revocations, disclosures, audit lists, operators or snapshot headers, which plain
lists do not have.

So each block is base64-decoded and hashed; each distinct certificate is loaded by
`cryptography` (its X.509 structure, not yet its names' values or its key), and three facts are
kept as one integer: its CA flag and whether it is self-issued, exactly as `parse_certificate`
derives them, and a hash of its subject Name. Then the certificates the rules may look at are
parsed in full and read the usual way: those one side lacks, every certificate whose subject
hash is one of theirs or that of another certificate (a doppelganger group shares its subject,
so its members are all among them), and self-issued ones (whether they are self-signed decides
the scope). The rest is counted, not decoded: a certificate both lists hold byte for byte, of a
subject no other certificate has, cannot differ between them.

One difference from reading both lists in full follows, on purpose: a certificate both lists
hold whose key `cryptography` does not support (SM2, GOST) or whose name values do not decode is
counted here, where the full reading stops at it with an error. Held by one side only, it is
parsed, and the comparison falls back to the full reading and its error.

The subject is hashed as the certificate encodes it: DER has one encoding of a Name (the
decoder refuses an unsorted SET OF), so these are the bytes `cryptography` re-encodes
(tests/test_by_fingerprint.py checks it on CCADB's certificates).

Any input the fast scan cannot vouch for (`agent.sources.pem_scan.Irregular`), a certificate
`cryptography` cannot load, or one that must be parsed and does not, makes
`compare_plain_lists` return None: the caller then reads the lists in full, which gives the same
findings or the precise error.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from cryptography import x509

from invsync.agent.errors import CertificateError
from invsync.agent.inventory.assemble import assemble
from invsync.agent.inventory.scope import issued_ca_certificates
from invsync.agent.model.bundle import Facts, Progress, SourceContext
from invsync.agent.model.der import certificate_parts
from invsync.agent.model.facts import Skipped
from invsync.agent.model.record import (
    DECODE_ERRORS,
    CertInfo,
    CertRecord,
    SourceRef,
    ca_flag,
    parse_certificate,
)
from invsync.agent.sources.detect import PEM
from invsync.agent.sources.pem_scan import Irregular, Span, ders_at, scan_pem

_CA = 1
_SELF_ISSUED = 2
_FLAGS = 2  # bits below the subject hash

# A block's place as one integer (a tuple of tuples takes about three times the memory, and a
# side may list millions): its file's index among the side's files, its offset, its length.
_LENGTH_BITS = 24  # pem_scan's blocks stay under 1 MiB (it refuses longer stretches)
_OFFSET_BITS = 48


def _location(index: int, span: Span) -> int:
    offset, length = span
    return (index << _OFFSET_BITS | offset) << _LENGTH_BITS | length


def _file_and_span(location: int) -> tuple[int, Span]:
    length = location & ((1 << _LENGTH_BITS) - 1)
    rest = location >> _LENGTH_BITS
    return rest >> _OFFSET_BITS, (rest & ((1 << _OFFSET_BITS) - 1), length)


@dataclass(frozen=True)
class OfflineSide:
    """One side of an offline comparison: records in scope (all of them, or by fingerprint
    first those a rule can need), how many distinct certificates the side lists, how many of
    them are in scope, and the rows left out by --skip-invalid."""

    records: list[CertRecord]
    held: int
    in_scope: int
    skipped: tuple[Skipped, ...] = ()


@dataclass
class _Listing:
    """One side's blocks by SHA-256 digest: where each digest first lies, and later repeats."""

    files: Sequence[Path]
    first: dict[bytes, int] = field(default_factory=dict)  # digest: _location
    repeats: list[tuple[bytes, int]] = field(default_factory=list)


def compare_plain_lists(
    root: Sequence[Path], sub: Sequence[Path], ctx: SourceContext
) -> tuple[OfflineSide, OfflineSide] | None:
    """Both sides, or None when some file or certificate needs the full reader."""
    facts: dict[bytes, int] = {}
    try:
        listings = [_listing(files, facts, ctx.progress) for files in (root, sub)]
    except Irregular:
        return None
    root_listing, sub_listing = listings
    alone = root_listing.first.keys() ^ sub_listing.first.keys()
    subjects = {facts[digest] >> _FLAGS for digest in alone} | _shared_subjects(facts)
    wanted = alone | {
        digest
        for digest, known in facts.items()
        if known & _SELF_ISSUED or known >> _FLAGS in subjects
    }
    try:
        root_side, sub_side = (_side(listing, facts, wanted, ctx) for listing in listings)
    except Irregular:
        return None
    return root_side, sub_side


def _shared_subjects(facts: dict[bytes, int]) -> set[int]:
    """The subject hashes of more than one distinct certificate: the possible groups."""
    counts = Counter(known >> _FLAGS for known in facts.values())
    return {subject for subject, n in counts.items() if n > 1}


def _listing(files: Sequence[Path], facts: dict[bytes, int], progress: Progress) -> _Listing:
    listing = _Listing(files)
    for index, path in enumerate(files):
        for count, (span, der) in enumerate(scan_pem(path), 1):
            digest = hashlib.sha256(der).digest()
            if digest not in facts:
                facts[digest] = _facts(der, path)
            if digest in listing.first:
                listing.repeats.append((digest, _location(index, span)))
            else:
                listing.first[digest] = _location(index, span)
            if count % 10_000 == 0:
                progress(len(listing.first), None)
    return listing


def _facts(der: bytes, path: Path) -> int:
    """CA flag, self-issued, and the subject's hash, as one integer."""
    try:
        cert = x509.load_der_x509_certificate(der)
        parts = certificate_parts(der)
        issuer, subject = parts.issuer, parts.subject
        flags = (_CA if ca_flag(cert) else 0) | (_SELF_ISSUED if issuer == subject else 0)
    except DECODE_ERRORS as e:
        raise Irregular(f"{path}: a certificate the full reader must name: {e}") from e
    return hash(subject) << _FLAGS | flags


def _side(
    listing: _Listing, facts: dict[bytes, int], wanted: set[bytes], ctx: SourceContext
) -> OfflineSide:
    records = [
        CertRecord(_parsed(der, path), sources=(SourceRef(PEM, str(path), ctx.now, ctx.now),))
        for path, der in _wanted_ders(listing, wanted)
    ]
    scoped = issued_ca_certificates(assemble(Facts(records=tuple(records))).records)
    # Certificates not read are not self-issued (those all are), so their CA flag decides.
    counted = sum(1 for digest in listing.first if digest not in wanted and facts[digest] & _CA)
    return OfflineSide(scoped, held=len(listing.first), in_scope=counted + len(scoped))


def _parsed(der: bytes, path: Path) -> CertInfo:
    try:
        return parse_certificate(der)
    except CertificateError as e:  # the full reader names the block
        raise Irregular(f"{path}: {e}") from e


def _wanted_ders(listing: _Listing, wanted: set[bytes]) -> Iterable[tuple[Path, bytes]]:
    """The wanted blocks' DER bytes with their file, in file order (as the full reader reads),
    each checked to be the certificate the scan hashed (the file may have changed since)."""
    by_file: dict[int, list[tuple[Span, bytes]]] = {}
    for digest, location in chain(listing.first.items(), listing.repeats):
        if digest in wanted:
            index, span = _file_and_span(location)
            by_file.setdefault(index, []).append((span, digest))
    for index, path in enumerate(listing.files):
        blocks = sorted(by_file.get(index, []))
        for (span, digest), der in zip(blocks, ders_at(path, [s for s, _ in blocks]), strict=True):
            if hashlib.sha256(der).digest() != digest:
                raise Irregular(f"{path}: the block at byte {span[0]} changed since it was read")
            yield path, der
