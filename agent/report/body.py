"""The reconciliation report (DESIGN §8): a deterministic JSON body, signed in a DSSE envelope.

The body is canonical JSON (sorted keys, no spaces, UTF-8) of the pairing, the clock, both
snapshots (party, version, digest), the findings, and the signers the report expects (server,
root, subordinate, each with its public key). Same inputs, byte-identical body: findings and
signers are sorted here whatever order the caller gives, so every agent can rebuild the body
the server built and sign only if the bytes match.

A report file is the DSSE JSON envelope (`payloadType`, `payload`, `signatures`); signatures
cover PAE(REPORT_PAYLOAD_TYPE, body) over the exact body bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from invsync.agent.errors import InvsyncError, ReportError, SignatureError
from invsync.agent.exchange.envelope import Envelope, from_json_dict, pae, to_json_dict
from invsync.agent.exchange.keys import VerifyKey, verify_key_from_spki_der
from invsync.agent.files import write_atomically
from invsync.agent.model.findings import Finding, count_by_severity, parse_rfc3339
from invsync.agent.model.snapshot import Snapshot
from invsync.agent.model.untrusted_json import read_json
from invsync.agent.report.certificates import CertificateLookup, ListedCertificate
from invsync.agent.report.diff import FindingKey, finding_key
from invsync.agent.times import rfc3339

REPORT_PAYLOAD_TYPE = "application/vnd.invsync.report.v1+json"
SCHEMA = "invsync.report.v1"
SIGNER_ROLES = ("server", "root", "subordinate")

T = TypeVar("T")

_BODY_FIELDS = (
    "schema",
    "pairing",
    "as_of",
    "root",
    "subordinate",
    "summary",
    "findings",
    "signers",
    "previous_report",
    "resolved",
    "certificates",
)
# A body made before reports listed their certificates lacks `certificates`; it still reads.
_OPTIONAL_FIELDS = frozenset({"certificates"})


@dataclass(frozen=True)
class SnapshotRef:
    """Which snapshot of a party the report compares: `digest` is the lowercase hex SHA-256
    of the exact signed snapshot payload."""

    party: str
    role: str
    version: int
    digest: str

    @classmethod
    def of(cls, snapshot: Snapshot, role: str) -> SnapshotRef:
        """The reference to a decoded snapshot, compared in `role`."""
        header = snapshot.header
        return cls(header.party, role, header.version, snapshot.payload_sha256)

    @classmethod
    def absent(cls, party: str, role: str) -> SnapshotRef:
        """The side of a party that has sent no snapshot yet: version 0, no digest."""
        return cls(party, role, 0, "")

    def to_json(self) -> dict[str, object]:
        return {
            "party": self.party,
            "role": self.role,
            "version": self.version,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class Signer:
    """A key whose signature the report expects; `keyid` is the SHA-256 of `public_key`
    (SubjectPublicKeyInfo DER)."""

    role: str  # one of SIGNER_ROLES
    name: str
    keyid: str
    public_key: bytes

    def __post_init__(self) -> None:
        if self.role not in SIGNER_ROLES:
            raise ValueError(f"signer role {self.role!r} is not one of {', '.join(SIGNER_ROLES)}")

    def to_json(self) -> dict[str, object]:
        encoded = base64.b64encode(self.public_key).decode("ascii")
        return {"role": self.role, "name": self.name, "keyid": self.keyid, "public_key": encoded}

    @property
    def sort_key(self) -> tuple[int, str, str]:
        return (SIGNER_ROLES.index(self.role), self.name, self.keyid)


@dataclass(frozen=True)
class Resolved:
    """A finding of the previous report that this report no longer lists: when it was first
    seen, when it was found resolved (this report's `as_of`) and by which snapshot versions."""

    finding: Finding  # as the previous report listed it, first_seen included
    resolved_at: datetime
    root_version: int
    subordinate_version: int

    def to_json(self) -> dict[str, object]:
        return {
            **self.finding.to_json(),
            "resolved_at": rfc3339(self.resolved_at),
            "resolved_by": {
                "root_version": self.root_version,
                "subordinate_version": self.subordinate_version,
            },
        }


@dataclass(frozen=True)
class ReportBody:
    """A parsed report body; `parse_report_body` checked every field. `report_id` is the id of
    the bytes it was parsed from ("" for a body built in memory)."""

    pairing: str
    as_of: datetime
    root: SnapshotRef
    subordinate: SnapshotRef
    summary: Mapping[str, int]
    findings: tuple[Finding, ...]
    signers: tuple[Signer, ...]
    schema: str = SCHEMA
    previous_report: str | None = None
    resolved: tuple[Resolved, ...] = ()
    report_id: str = ""
    certificates: tuple[ListedCertificate, ...] = ()


def build_report_body(
    *,
    pairing: str,
    as_of: datetime,
    root: SnapshotRef,
    subordinate: SnapshotRef,
    findings: Iterable[Finding],
    signers: Iterable[Signer],
    previous: ReportBody | None = None,
    certificates: CertificateLookup | None = None,
) -> bytes:
    """The canonical body bytes: what the server and both parties sign.

    A pure function of its arguments. `previous` is the pairing's report this one continues
    (parsed, so it knows its id): a finding with the same identity (`finding_key`) there keeps
    its `first_seen`, any other is first seen now; the previous findings gone from `findings`
    are listed as `resolved` by this report's snapshot versions. `certificates` gives the facts
    of the certificates the findings and resolved findings name (none listed without it).
    """
    if previous is not None and (previous.pairing != pairing or not previous.report_id):
        raise ValueError("previous must be a parsed report of the same pairing")
    seen = _first_seen(previous)
    dated = [replace(f, first_seen=seen.get(finding_key(f), as_of)) for f in findings]
    ordered = sorted(dated, key=lambda finding: finding.sort_key)
    resolved = _resolved(previous, {finding_key(f) for f in ordered}, as_of, root, subordinate)
    obj = {
        "schema": SCHEMA,
        "pairing": pairing,
        "as_of": rfc3339(as_of),
        "root": root.to_json(),
        "subordinate": subordinate.to_json(),
        "summary": count_by_severity(ordered),
        "findings": [finding.to_json() for finding in ordered],
        "signers": [signer.to_json() for signer in sorted(signers, key=lambda s: s.sort_key)],
        "previous_report": None if previous is None else previous.report_id,
        "resolved": [r.to_json() for r in resolved],
        "certificates": _listed(ordered, resolved, certificates),
    }
    return canonical_json(obj)


def _listed(
    findings: list[Finding], resolved: list[Resolved], lookup: CertificateLookup | None
) -> list[dict[str, object]]:
    if lookup is None:
        return []
    named = [*findings, *(r.finding for r in resolved)]
    shas = frozenset(sha for f in named for sha in (f.sha256, *f.related) if sha)
    found = {c.sha256: c for c in lookup(shas) if c.sha256 in shas}
    return [found[sha].to_json() for sha in sorted(found)]


def _first_seen(previous: ReportBody | None) -> dict[FindingKey, datetime]:
    """Each identity's earliest first_seen in `previous` (its as_of when a finding has none)."""
    seen: dict[FindingKey, datetime] = {}
    for finding in () if previous is None else previous.findings:
        assert previous is not None
        when = finding.first_seen or previous.as_of
        key = finding_key(finding)
        seen[key] = min(when, seen.get(key, when))
    return seen


def _resolved(
    previous: ReportBody | None,
    current: set[FindingKey],
    as_of: datetime,
    root: SnapshotRef,
    subordinate: SnapshotRef,
) -> list[Resolved]:
    if previous is None:
        return []
    gone = [f for f in previous.findings if finding_key(f) not in current]
    return [
        Resolved(
            replace(f, first_seen=f.first_seen or previous.as_of),
            as_of,
            root.version,
            subordinate.version,
        )
        for f in sorted(gone, key=lambda finding: finding.sort_key)
    ]


def canonical_json(obj: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8 as is: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def report_id(body: bytes) -> str:
    """The report's identity: lowercase hex SHA-256 of the exact body bytes."""
    return hashlib.sha256(body).hexdigest()


def parse_report_body(body: bytes) -> ReportBody:
    """Decode and check a body; ReportError names the missing or malformed field.

    A cycle reads the same body several times (the check, the co-signing, the report's file
    and page), 0.05 s each with 400 findings: the last few parsed are kept by their id, the
    SHA-256 of their exact bytes. A ReportBody is immutable, so one is shared."""
    rid = report_id(body)
    kept = _PARSED.get(rid)
    if kept is None:
        kept = _parsed(body, rid)
        with _PARSED_LOCK:
            _PARSED[rid] = kept
            while len(_PARSED) > _PARSED_KEPT:
                del _PARSED[next(iter(_PARSED))]
    return kept


_PARSED: dict[str, ReportBody] = {}
_PARSED_KEPT = 8
_PARSED_LOCK = threading.Lock()


def _parsed(body: bytes, rid: str) -> ReportBody:
    obj = _object(_json(body, "report body"), "report body")
    if not set(_BODY_FIELDS) - _OPTIONAL_FIELDS <= set(obj) <= set(_BODY_FIELDS):
        missing = set(_BODY_FIELDS) - _OPTIONAL_FIELDS - set(obj)
        extra = set(obj) - set(_BODY_FIELDS)
        raise ReportError(f"report body: missing {sorted(missing)}, unexpected {sorted(extra)}")
    if obj["schema"] != SCHEMA:
        raise ReportError(f"report body: field 'schema' is {obj['schema']!r}, expected {SCHEMA!r}")
    parsed = ReportBody(
        pairing=_str(obj, "pairing", "report body"),
        as_of=parse_rfc3339(_str(obj, "as_of", "report body"), "report body: field 'as_of'"),
        root=_snapshot_ref(obj["root"], "root"),
        subordinate=_snapshot_ref(obj["subordinate"], "subordinate"),
        summary=_summary(obj["summary"]),
        findings=tuple(_list_of(obj, "findings", Finding.from_json)),
        signers=tuple(_list_of(obj, "signers", _signer)),
        previous_report=_previous_report(obj["previous_report"]),
        resolved=tuple(_list_of(obj, "resolved", _resolved_entry)),
        report_id=rid,
        certificates=_certificates(obj),
    )
    if dict(parsed.summary) != count_by_severity(parsed.findings):
        raise ReportError("report body: field 'summary' does not match the findings")
    for index, finding in enumerate(parsed.findings):
        if finding.first_seen is None:
            raise ReportError(f"report body: findings[{index}]: field 'first_seen' is null")
    return parsed


def _certificates(obj: Mapping[str, object]) -> tuple[ListedCertificate, ...]:
    if "certificates" not in obj:
        return ()
    listed = tuple(_list_of(obj, "certificates", ListedCertificate.from_json))
    shas = [c.sha256 for c in listed]
    if shas != sorted(set(shas)):
        raise ReportError("report body: field 'certificates' must be sorted by sha256, once each")
    return listed


def _previous_report(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ReportError("report body: field 'previous_report' must be null or a report id")
    return value


_RESOLVED_EXTRA = ("resolved_at", "resolved_by")


def _resolved_entry(value: object, where: str) -> Resolved:
    obj = _object(value, where)
    finding = Finding.from_json({k: v for k, v in obj.items() if k not in _RESOLVED_EXTRA}, where)
    if finding.first_seen is None:
        raise ReportError(f"{where}: field 'first_seen' is null")
    by = _object(obj.get("resolved_by"), f"{where}: field 'resolved_by'")
    versions = [by.get("root_version"), by.get("subordinate_version")]
    if set(by) != {"root_version", "subordinate_version"} or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in versions
    ):
        raise ReportError(
            f"{where}: field 'resolved_by' must hold integers root_version, subordinate_version"
        )
    resolved_at = parse_rfc3339(_str(obj, "resolved_at", where), f"{where}: field 'resolved_at'")
    return Resolved(finding, resolved_at, int(str(versions[0])), int(str(versions[1])))


def _json(data: bytes, where: str) -> object:
    return read_json(data, where, ReportError)


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected a JSON object")
    return value


def _str(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ReportError(f"{where}: field {key!r} missing or not a string")
    return value


def _snapshot_ref(value: object, role: str) -> SnapshotRef:
    obj = _object(value, f"report body: field {role!r}")
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError(f"report body: {role}.version missing or not an integer")
    ref = SnapshotRef(
        party=_str(obj, "party", f"report body: {role}"),
        role=_str(obj, "role", f"report body: {role}"),
        version=version,
        digest=_str(obj, "digest", f"report body: {role}"),
    )
    if ref.role != role:
        raise ReportError(f"report body: {role}.role is {ref.role!r}, expected {role!r}")
    return ref


def _summary(value: object) -> Mapping[str, int]:
    obj = _object(value, "report body: field 'summary'")
    if not all(isinstance(count, int) for count in obj.values()):
        raise ReportError("report body: field 'summary' must map severities to integers")
    # Read-only: a parsed body is shared by every reader of the same bytes.
    return MappingProxyType({key: count for key, count in obj.items() if isinstance(count, int)})


def _list_of(obj: Mapping[str, object], key: str, read: Callable[[object, str], T]) -> list[T]:
    items = obj[key]
    if not isinstance(items, list):
        raise ReportError(f"report body: field {key!r} must be a list")
    return [read(item, f"report body: {key}[{index}]") for index, item in enumerate(items)]


def _signer(value: object, where: str) -> Signer:
    obj = _object(value, where)
    role = _str(obj, "role", where)
    if role not in SIGNER_ROLES:
        raise ReportError(f"{where}: role {role!r} is not one of {', '.join(SIGNER_ROLES)}")
    try:
        public_key = base64.b64decode(_str(obj, "public_key", where), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ReportError(f"{where}: field 'public_key' is not base64") from e
    name, keyid = _str(obj, "name", where), _str(obj, "keyid", where)
    return Signer(role, name, keyid, public_key)


# --- comparing a report with what this agent computed -----------------------------------------


def compare_findings(
    expected: bytes | ReportBody | Iterable[Finding],
    actual: bytes | ReportBody | Iterable[Finding],
    *,
    theirs: str = "server",
) -> list[str]:
    """Human-readable differences between `theirs` findings (`expected`) and mine (`actual`).

    Findings are matched by (code, sha256); a pair that matches but differs in another field is
    one line naming the fields. Empty when they agree, so an agent signs only on `[]`.
    """
    their_groups, my_groups = _grouped(expected), _grouped(actual)
    lines: list[str] = []
    for key in sorted(their_groups.keys() | my_groups.keys()):
        theirs_only, mine_only = _unmatched(their_groups.get(key, []), my_groups.get(key, []))
        if len(theirs_only) == 1 and len(mine_only) == 1:
            lines.append(_field_differences(key, theirs_only[0], mine_only[0], theirs))
            continue
        lines += [f"{theirs} lists {_label(key)} that I do not" for _ in theirs_only]
        lines += [f"I find {_label(key)} that {theirs} does not list" for _ in mine_only]
    return lines


def _findings_of(source: bytes | ReportBody | Iterable[Finding]) -> tuple[Finding, ...]:
    if isinstance(source, bytes):
        return parse_report_body(source).findings
    if isinstance(source, ReportBody):
        return source.findings
    return tuple(source)


def _grouped(
    source: bytes | ReportBody | Iterable[Finding],
) -> dict[tuple[str, str], list[Finding]]:
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in _findings_of(source):
        groups.setdefault((finding.code, finding.sha256), []).append(finding)
    return groups


def _unmatched(theirs: list[Finding], mine: list[Finding]) -> tuple[list[Finding], list[Finding]]:
    remaining = list(mine)
    theirs_only = []
    for finding in theirs:
        if finding in remaining:
            remaining.remove(finding)
        else:
            theirs_only.append(finding)
    return theirs_only, remaining


def _field_differences(key: tuple[str, str], their: Finding, mine: Finding, theirs: str) -> str:
    their_json, my_json = their.to_json(), mine.to_json()
    fields = [name for name in their_json if their_json[name] != my_json[name]]
    details = ", ".join(f"{name} {their_json[name]!r} vs mine {my_json[name]!r}" for name in fields)
    return f"{theirs} and I differ on {_label(key)}: {details}"


def _label(key: tuple[str, str]) -> str:
    code, sha256 = key
    return f"{code} {sha256 or '(no certificate)'}"


# --- verifying a signed report ----------------------------------------------------------------


class SignerStatus(StrEnum):
    """What one expected signer's signature says, best first."""

    VALID = "valid"
    UNVERIFIED = "unverified"  # signed by the key the body lists, which the reader does not pin
    INVALID = "invalid"
    UNTRUSTED = "untrusted"  # signed with a key other than the one pinned for that name
    ABSENT = "absent"


# A listed signer in one of these keeps a report from being complete, whatever its role's best.
_NOT_TRUSTED = (SignerStatus.UNVERIFIED, SignerStatus.INVALID, SignerStatus.UNTRUSTED)


@dataclass(frozen=True)
class Pins:
    """The key ids a reader trusts for a report's signers: a body's own list of keys is never a
    trust anchor, so a signer whose key is not pinned here is at best UNVERIFIED.

    `names` pins a signer name in any role (`invsync report verify --pin NAME=KEYID`); an agent's
    configuration pins `server` keys for the server role, whatever name the body gives the
    server (an agent does not know it), and each party's keys (`parties`) for the party roles.
    """

    names: Mapping[str, frozenset[str]] = field(default_factory=dict)
    server: frozenset[str] = frozenset()
    parties: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, pinned: Mapping[str, str]) -> Pins:
        """One key id per signer name."""
        return cls(names={name: frozenset([keyid]) for name, keyid in pinned.items()})

    def merged(self, other: Pins) -> Pins:
        """Both sets of pins: a signer may use a key either pins."""
        return Pins(
            _union(self.names, other.names),
            self.server | other.server,
            _union(self.parties, other.parties),
        )

    def keys_for(self, signer: Signer) -> frozenset[str]:
        """The key ids pinned for `signer` in its role; empty when none is."""
        by_role = self.server if signer.role == "server" else self.parties.get(signer.name)
        return self.names.get(signer.name, frozenset()) | (by_role or frozenset())


def _union(
    a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    return {name: a.get(name, frozenset()) | b.get(name, frozenset()) for name in {*a, *b}}


@dataclass(frozen=True)
class SignerCheck:
    signer: Signer
    status: SignerStatus
    detail: str = ""


@dataclass(frozen=True)
class ReportVerification:
    """Per-signer and per-role results; `complete` when every role has a valid signature and no
    listed signer is unverified, invalid or untrusted.

    Like `envelope.VerificationResult`, it never raises: a report can show partial results.
    Callers that only need yes or no call `raise_unless_complete`.
    """

    report_id: str
    body: ReportBody
    checks: tuple[SignerCheck, ...]
    unknown_keyids: tuple[str, ...]  # signatures by keys the body does not list

    @property
    def roles(self) -> dict[str, SignerStatus]:
        """For each role, the best status among its signers (ABSENT when none is listed)."""
        order = list(SignerStatus)
        best = {role: SignerStatus.ABSENT for role in SIGNER_ROLES}
        for check in self.checks:
            if order.index(check.status) < order.index(best[check.signer.role]):
                best[check.signer.role] = check.status
        return best

    @property
    def complete(self) -> bool:
        every_role = all(status is SignerStatus.VALID for status in self.roles.values())
        return every_role and not any(check.status in _NOT_TRUSTED for check in self.checks)

    def describe(self) -> str:
        """A few lines for a person: the report, then one line per expected signer."""
        body = self.body
        lines = [f"report {self.report_id} (pairing {body.pairing}, as of {rfc3339(body.as_of)})"]
        for check in self.checks:
            signer = check.signer
            detail = f" ({check.detail})" if check.detail else ""
            lines.append(
                f"  {signer.role:<11}  {signer.name:<16}  {signer.keyid[:16]}  "
                f"{check.status.value}{detail}"
            )
        lines += [f"  signature by unlisted key {keyid}" for keyid in self.unknown_keyids]
        verdict = "complete" if self.complete else "INCOMPLETE"
        roles = ", ".join(f"{role} {status.value}" for role, status in self.roles.items())
        return "\n".join([*lines, f"{verdict}: {roles}"])

    def raise_unless_complete(self) -> None:
        """SignatureError naming every role without a valid signature, or every other signer
        that keeps the report from being complete."""
        missing = [f"{r} {s.value}" for r, s in self.roles.items() if s is not SignerStatus.VALID]
        missing += [
            f"{c.signer.role} {c.signer.name} {c.status.value}"
            for c in self.checks
            if c.status in _NOT_TRUSTED and self.roles[c.signer.role] is SignerStatus.VALID
        ]
        if missing:
            raise SignatureError(f"report {self.report_id}: {', '.join(missing)}")


def verify_report(
    env: Envelope, pinned: Pins | Mapping[str, str] | None = None
) -> ReportVerification:
    """Check every signature of a report envelope against the keys its body lists and `pinned`.

    The body names its signers' public keys, so it is parsed first; each signature is then
    checked over PAE(type, exact payload bytes). A signer's listed keyid must be the SHA-256
    of its listed key, or a body could pair a pinned keyid with another key, and a name may
    stand in one role only, or a party's key could pass for the server's. With `pinned` (`Pins`,
    or name -> keyid), a signer pinned to another key is UNTRUSTED, and a valid signature by a
    key not pinned for it UNVERIFIED. Without it "valid" only means "signed by the key the body
    lists": a self-consistency check for tests and tools; every reader of invsync passes pins.
    """
    if env.payload_type != REPORT_PAYLOAD_TYPE:
        raise ReportError(f"payload type {env.payload_type!r} is not {REPORT_PAYLOAD_TYPE!r}")
    body = parse_report_body(env.payload)
    pins = Pins.of(pinned) if pinned is not None and not isinstance(pinned, Pins) else pinned
    message = pae(env.payload_type, env.payload)
    roles = _roles_by_name(body.signers)
    checks = tuple(
        _check_signer(signer, env, message, pins, roles[signer.name]) for signer in body.signers
    )
    listed = {signer.keyid for signer in body.signers}
    unknown = tuple(dict.fromkeys(s.keyid for s in env.signatures if s.keyid not in listed))
    return ReportVerification(report_id(env.payload), body, checks, unknown)


def _roles_by_name(signers: Iterable[Signer]) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for signer in signers:
        if signer.role not in roles.setdefault(signer.name, []):
            roles[signer.name].append(signer.role)
    return roles


def _check_signer(
    signer: Signer, env: Envelope, message: bytes, pins: Pins | None, roles: list[str]
) -> SignerCheck:
    """The checks that need no pin, then the pin, then the signature itself."""
    try:
        key = verify_key_from_spki_der(signer.public_key, source=f"signer {signer.name}")
    except InvsyncError as e:
        return SignerCheck(signer, SignerStatus.INVALID, str(e))
    if key.keyid != signer.keyid:
        return SignerCheck(signer, SignerStatus.INVALID, "keyid is not that of the listed key")
    if len(roles) > 1:
        detail = f"{signer.name} is listed as {' and '.join(roles)}: one name, one role"
        return SignerCheck(signer, SignerStatus.INVALID, detail)
    pinned = None if pins is None else pins.keys_for(signer)
    if pinned and signer.keyid not in pinned:
        return SignerCheck(signer, SignerStatus.UNTRUSTED, _pinned_detail(pinned))
    status = _signature_status(key, signer.keyid, env, message)
    if status is SignerStatus.VALID and pinned is not None and not pinned:
        return SignerCheck(signer, SignerStatus.UNVERIFIED, f"no key pinned for {signer.name}")
    detail = "signature does not verify" if status is SignerStatus.INVALID else ""
    return SignerCheck(signer, status, detail)


def _pinned_detail(pinned: frozenset[str]) -> str:
    if len(pinned) == 1:
        return f"pinned key is {next(iter(pinned))}"
    return f"pinned keys are {', '.join(sorted(pinned))}"


def _signature_status(key: VerifyKey, keyid: str, env: Envelope, message: bytes) -> SignerStatus:
    sigs = [s.sig for s in env.signatures if s.keyid == keyid]
    if not sigs:
        return SignerStatus.ABSENT
    if any(key.verify(sig, message) for sig in sigs):
        return SignerStatus.VALID
    return SignerStatus.INVALID


# --- report files -----------------------------------------------------------------------------


def write_report_file(path: str | Path, env: Envelope) -> None:
    """Write the DSSE JSON envelope atomically: a reader sees the old report or the new one,
    never half a report, even after a crash."""
    data = json.dumps(to_json_dict(env), indent=2, sort_keys=True) + "\n"
    write_atomically(Path(path), data)


def read_report_file(path: str | Path) -> Envelope:
    """Read a report file written by `write_report_file`; ReportError names the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ReportError(f"report file {path}: cannot read ({e.strerror})") from e
    obj = _object(_json(data, f"report file {path}"), f"report file {path}")
    try:
        return from_json_dict(obj)
    except InvsyncError as e:
        raise ReportError(f"report file {path}: {e}") from e
