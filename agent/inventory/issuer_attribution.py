"""Attribution from the other certificates of the inventory (issue 14, item 3).

Two sources that a record cannot answer alone, asked after every per-record source
(agent/inventory/attribution.py):

- **issuer key**: a certificate signed by the key of a CA certificate attributed to one of the
  agent's root pairings' subordinates was issued by that subordinate's CA (a further sub-CA, or
  a cross-certificate it issued), so it is on that subordinate's side: whatever chains to the
  root through the subordinate's key is the subordinate's to track. The issuer is found as a
  path chains: a CA certificate whose subject is the certificate's issuer name and, when the
  certificate has an AuthorityKeyIdentifier, whose SubjectKeyIdentifier is that; names and
  identifiers only point to a candidate, the signature verified with the candidate's key
  decides. Followed down the chain: a certificate attributed so signs further.
- **final certificate**: a CT pre-certificate (source kind `ct-precert`) has its own SHA-256, so
  the issuance log's or CCADB's word on its certificate never reaches it. It has the same issuer,
  serial and subject key as that certificate (RFC 6962 §3.1), and is attributed like it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_der_public_key

from invsync.agent.model.record import CertRecord
from invsync.agent.model.signatures import signed_by

ISSUER_KEY = "issuer-key"
FINAL_CERTIFICATE = "final-certificate"
CT_PRECERT = "ct-precert"  # agent.sources.ct.CT_PRECERT (sources may not be imported here)


@dataclass(frozen=True)
class Vote:
    """`records[index]`'s operator is `operator`, by `how`."""

    index: int
    operator: str
    how: str


def issuer_key_votes(records: Sequence[CertRecord], subordinates: Iterable[str]) -> list[Vote]:
    """A vote for each record signed by a key whose CA certificate is attributed to one of
    `subordinates`, following chains down; none for a record whose key signs itself."""
    wanted = frozenset(subordinates)
    if not wanted:
        return []
    keys = _Keys()
    for record in records:
        if record.operator in wanted and record.info.is_ca:
            keys.add(record, record.operator)
    votes: dict[int, Vote] = {}
    grown = True
    while grown:  # each pass adds the keys of the certificates the last one attributed
        grown = False
        for index, record in enumerate(records):
            if index in votes or _signs_itself(record):
                continue
            operator = keys.operator_of_issuer(record)
            if operator is None:
                continue
            votes[index] = Vote(index, operator, ISSUER_KEY)
            if record.info.is_ca and keys.add(record, operator):
                grown = True
    return sorted(votes.values(), key=lambda vote: vote.index)


def final_certificate_votes(records: Sequence[CertRecord]) -> list[Vote]:
    """A vote for each CT pre-certificate whose certificate (same issuer, serial and subject
    key) has an operator: it decides an unattributed one, and is a conflict for one another
    source gave to someone else."""
    precerts = [i for i, r in enumerate(records) if _is_precert(r)]
    if not precerts:
        return []
    decided = {
        _same_certificate(r): r.operator for r in records if r.operator and not _is_precert(r)
    }
    votes = []
    for index in precerts:
        operator = decided.get(_same_certificate(records[index]))
        if operator:
            votes.append(Vote(index, operator, FINAL_CERTIFICATE))
    return votes


def _is_precert(record: CertRecord) -> bool:
    return any(source.kind == CT_PRECERT for source in record.sources)


def _same_certificate(record: CertRecord) -> tuple[bytes, str, str]:
    info = record.info
    return info.issuer_der, info.serial_hex, info.spki_sha256


def _signs_itself(record: CertRecord) -> bool:
    # A self-issued certificate with the AKI of its own key (or none) is its key's own
    # statement, not something another CA issued.
    info = record.info
    return info.self_issued and (info.aki is None or info.aki == info.ski)


class _Keys:
    """The CA keys attributed to a subordinate, by the subject name of their certificates."""

    def __init__(self) -> None:
        self._operator: dict[str, str] = {}  # SPKI SHA-256 -> operator
        # subject DER -> (SPKI SHA-256, SPKI DER, SubjectKeyIdentifier)
        self._by_subject: dict[bytes, list[tuple[str, bytes, str | None]]] = {}

    def add(self, record: CertRecord, operator: str) -> bool:
        """Whether the record's key is new here."""
        info = record.info
        if info.spki_sha256 in self._operator:
            return False
        self._operator[info.spki_sha256] = operator
        key = (info.spki_sha256, info.spki_der, info.ski)
        self._by_subject.setdefault(info.subject_der, []).append(key)
        return True

    def operator_of_issuer(self, record: CertRecord) -> str | None:
        """The operator of the key that signed `record`, among the keys whose certificate's
        subject is its issuer (as a path chains) and, when it has an AuthorityKeyIdentifier,
        whose SubjectKeyIdentifier is that."""
        info = record.info
        candidates = [
            (spki_sha256, spki_der)
            for spki_sha256, spki_der, ski in self._by_subject.get(info.issuer_der, ())
            if spki_sha256 != info.spki_sha256 and (info.aki is None or ski in (None, info.aki))
        ]
        if not candidates:
            return None  # the common case: no certificate needs loading
        cert = x509.load_der_x509_certificate(info.der)
        for spki_sha256, spki_der in candidates:
            if signed_by(cert, load_der_public_key(spki_der)):
                return self._operator[spki_sha256]
        return None
