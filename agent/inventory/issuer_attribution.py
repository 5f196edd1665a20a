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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

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


def issuer_key_votes(
    records: Sequence[CertRecord], subordinates: Iterable[str], roots: frozenset[str] = frozenset()
) -> list[Vote]:
    """A vote for each record signed by a subordinate's CA key, following chains down; none
    for a record whose key signs itself. The keys in `roots` (SPKI SHA-256, the agent's own
    root keys) are never a subordinate's: a subordinate's cross-certificate to one of them,
    with the root's self-signed certificate not in the inventory, would otherwise make every
    certificate that root signed the subordinate's.

    A key is a subordinate's when every CA certificate of it in the inventory is attributed to
    that one subordinate (by a source, or by this vote). A key with a certificate of no operator
    or of another one, such as a root's key with its self-signed certificate, attributes
    nothing: a cross-certificate a subordinate issued to another CA is the subordinate's, but
    what that CA's key signs is not, unless it is."""
    wanted = frozenset(subordinates)
    if not wanted:
        return []
    # Only a certificate whose subject is some record's issuer can have signed one: most
    # inventories hold nothing a subordinate signed, and are done after these two passes.
    issuer_names = set(map(_ISSUER_DER, records))
    signers = [r for r in records if r.info.is_ca and r.info.subject_der in issuer_names]
    if not any(r.operator in wanted for r in signers):
        return []
    keys = _SubordinateKeys(records, {r.info.spki_sha256 for r in signers} - roots, wanted)
    votes: dict[int, Vote] = {}
    names = keys.take_all()
    while names:  # the records each newly taken key's names issued, then their keys' ...
        issued = [i for i, r in enumerate(records) if r.info.issuer_der in names]
        names = set()
        for index in issued:
            record = records[index]
            if index in votes or _signs_itself(record):
                continue
            operator = keys.operator_of_issuer(record)
            if operator is not None:
                votes[index] = Vote(index, operator, ISSUER_KEY)
                names |= keys.take(record.info.spki_sha256, votes)
    return sorted(votes.values(), key=lambda vote: vote.index)


_ISSUER_DER = attrgetter("info.issuer_der")


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


class _SubordinateKeys:
    """The CA keys of the subordinates, by the subject names of their certificates; of the
    keys whose certificates may have signed a record of the inventory."""

    def __init__(
        self, records: Sequence[CertRecord], signing: set[str], wanted: frozenset[str]
    ) -> None:
        self._records = records
        self._wanted = wanted
        self._of_key: dict[str, list[int]] = {}  # SPKI SHA-256 -> its CA records
        for index, record in enumerate(records):
            if record.info.is_ca and record.info.spki_sha256 in signing:
                self._of_key.setdefault(record.info.spki_sha256, []).append(index)
        self._operator: dict[str, str] = {}  # SPKI SHA-256 -> operator, of the keys taken
        # subject DER -> (SPKI SHA-256, SPKI DER, SubjectKeyIdentifier) of each certificate
        self._by_subject: dict[bytes, list[tuple[str, bytes, str | None]]] = {}

    def take_all(self) -> set[bytes]:
        """Take every key one subordinate holds by the sources; the subject names taken."""
        names: set[bytes] = set()
        for spki_sha256 in self._of_key:
            names |= self.take(spki_sha256, {})
        return names

    def take(self, spki_sha256: str, votes: Mapping[int, Vote]) -> set[bytes]:
        """Take the key if every one of its CA certificates is one subordinate's (by its
        operator, else its vote) and it was not taken before; the subject names taken."""
        indices = self._of_key.get(spki_sha256, ())
        if not indices or spki_sha256 in self._operator:
            return set()
        held = {self._records[i].operator or _voted(votes, i) for i in indices}
        operator = held.pop() if len(held) == 1 else None
        if operator is None or operator not in self._wanted:
            return set()
        self._operator[spki_sha256] = operator
        names = set()
        for index in indices:
            info = self._records[index].info
            self._by_subject.setdefault(info.subject_der, []).append(
                (info.spki_sha256, info.spki_der, info.ski)
            )
            names.add(info.subject_der)
        return names

    def operator_of_issuer(self, record: CertRecord) -> str | None:
        """The operator of the key that signed `record`, among the keys whose certificate's
        subject is its issuer (as a path chains) and, when it has an AuthorityKeyIdentifier,
        whose SubjectKeyIdentifier is that."""
        info = record.info
        candidates = {
            spki_sha256: spki_der
            for spki_sha256, spki_der, ski in self._by_subject.get(info.issuer_der, ())
            if spki_sha256 != info.spki_sha256 and (info.aki is None or ski in (None, info.aki))
        }
        if not candidates:
            return None
        cert = x509.load_der_x509_certificate(info.der)
        for spki_sha256, spki_der in candidates.items():
            if signed_by(cert, load_der_public_key(spki_der)):
                return self._operator[spki_sha256]
        return None


def _voted(votes: Mapping[int, Vote], index: int) -> str | None:
    vote = votes.get(index)
    return vote.operator if vote is not None else None
