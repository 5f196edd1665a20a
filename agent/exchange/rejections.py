"""Every way the exchange refuses a request, as data: a class, a rule, a hint and a gRPC status.

A refusal travels as a gRPC status (the code from `STATUS`, the error's message as its text) and
the trailing metadata `invsync-rule`, the rule's stable name, which clients, logs and metrics
use: a client never has to parse the text. Rule names are an interface (docs/metrics.md); never
rename one.

| rule | gRPC status | meaning |
|---|---|---|
| `rejected` | INVALID_ARGUMENT | the base of every refusal; never raised itself |
| `snapshot` | INVALID_ARGUMENT | the base of the snapshot acceptance rules; never raised itself |
| `incomplete-stream` | INVALID_ARGUMENT | a stream broke, or lacks or mismatches its trailer |
| `stream-too-large` | RESOURCE_EXHAUSTED | a snapshot stream went past the receiver's size limit |
| `unknown-party` | PERMISSION_DENIED | the TLS identity maps to no allowed party |
| `untrusted-signer` | PERMISSION_DENIED | no signature by a key in force for the party |
| `bad-signature` | PERMISSION_DENIED | a pinned key's signature does not verify over the bytes |
| `malformed-snapshot` | INVALID_ARGUMENT | the signed payload is not a well-formed snapshot |
| `party-mismatch` | PERMISSION_DENIED | the header names another party than the TLS identity |
| `pairing-mismatch` | PERMISSION_DENIED | unknown pairing, not a member, or the wrong role |
| `retired-key` | PERMISSION_DENIED | signed by a key the party rotated away from alone |
| `bad-key-announcement` | PERMISSION_DENIED | an announced key did not sign, or was retired |
| `rollback` | FAILED_PRECONDITION | version below the last accepted one |
| `equivocation` | ALREADY_EXISTS | the last accepted version again, with other bytes |
| `broken-chain` | FAILED_PRECONDITION | previous_digest is not the last accepted payload's digest |
| `expired` | FAILED_PRECONDITION | the snapshot's expires_at has passed |
| `issued-in-future` | FAILED_PRECONDITION | issued_at beyond now plus the allowed clock skew |
| `bad-validity` | INVALID_ARGUMENT | expires_at not after issued_at, or too far after it |
| `count-mismatch` | INVALID_ARGUMENT | record_count differs from the records |
| `digest-mismatch` | INVALID_ARGUMENT | records_digest is not the Merkle root of the records |
| `duplicate-record` | INVALID_ARGUMENT | a record appears twice |
| `access-denied` | PERMISSION_DENIED | the caller may not see or change what it asked for |
| `not-found` | NOT_FOUND | no snapshot or report of that pairing yet |
| `bad-report-signature` | PERMISSION_DENIED | a report signature fails with the keys in force |

An error that is no rejection (a store or internal failure) answers INTERNAL, without a rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from invsync.agent.errors import InvsyncError

# The trailing metadata key that carries a refusal's rule.
RULE_METADATA_KEY = "invsync-rule"
# What a client counts a refusal under when the server named no rule it knows.
UNKNOWN_RULE = "unknown"


class Rejection(InvsyncError):
    """The exchange refused a request. `rule` is its stable name, shown in logs and metrics."""

    rule = "rejected"
    hint = "Read the server's reason; the same request will be refused again."


class SnapshotRejected(Rejection):
    """A snapshot broke an acceptance rule (DESIGN §5). Nothing was stored."""

    rule = "snapshot"
    hint = (
        "Fix the sender's snapshot as the message says and push a new version; nothing was stored."
    )

    def __str__(self) -> str:
        return f"snapshot rejected [{self.rule}]: {super().__str__()}"


# The stream (agent.exchange.snapshot)


class IncompleteStream(SnapshotRejected):
    """A snapshot stream broke, ended without its trailer, or did not match the trailer."""

    rule = "incomplete-stream"
    hint = "The transfer was cut or altered; push or fetch the snapshot again."


class StreamTooLarge(IncompleteStream):
    """A snapshot stream went past the receiver's size limit; it was dropped unread."""

    rule = "stream-too-large"
    hint = "Raise the receiver's maximum snapshot size, or split the pairing's scope."


# The acceptance rules (agent.exchange.acceptance, agent.exchange.keyring), in their order


class UnknownPartyError(SnapshotRejected):
    rule = "unknown-party"
    hint = "Use the TLS client certificate issued to your party; the server maps it to a party."


class UntrustedSignerError(SnapshotRejected):
    rule = "untrusted-signer"
    hint = "Sign with your party's pinned key, or have the operator pin your new key."


class BadSignatureError(SnapshotRejected):
    rule = "bad-signature"
    hint = "The payload was altered after signing; rebuild and re-sign the snapshot."


class MalformedSnapshot(SnapshotRejected):
    """The signed payload is not a well-formed snapshot. The message names the record or field."""

    rule = "malformed-snapshot"
    hint = "The sender's agent built an invalid snapshot; fix the named record or field."


class PartyMismatchError(SnapshotRejected):
    rule = "party-mismatch"
    hint = "A party may only push its own snapshots; check the agent's configured party."


class PairingMismatchError(SnapshotRejected):
    rule = "pairing-mismatch"
    hint = "Check the pairing name and role in the agent's configuration against the server's."


class RetiredKeyError(SnapshotRejected):
    rule = "retired-key"
    hint = (
        "The party rotated to a new signing key; sign with it (agent.next_signing_key, or "
        "agent.signing_key once the rotation is done)."
    )


class KeyAnnouncementError(SnapshotRejected):
    rule = "bad-key-announcement"
    hint = (
        "Announce a new key in a snapshot signed by both the current key and the new one; a "
        "retired key cannot come back."
    )


class RollbackError(SnapshotRejected):
    rule = "rollback"
    hint = "Versions only go up; the agent's state may be older than the server's (restored?)."


class EquivocationError(SnapshotRejected):
    rule = "equivocation"
    hint = "A version can be signed once; push the new content under the next version."


class ChainError(SnapshotRejected):
    rule = "broken-chain"
    hint = "Build the snapshot on the last one the server accepted (its digest is in the receipt)."


class ExpiredError(SnapshotRejected):
    rule = "expired"
    hint = "Build and sign a fresh snapshot; check the sender's clock."


class FutureIssuedError(SnapshotRejected):
    rule = "issued-in-future"
    hint = "The sender's clock is ahead; synchronize it (NTP) and sign again."


class BadValidityError(SnapshotRejected):
    rule = "bad-validity"
    hint = "Set expires_at after issued_at and within the server's maximum snapshot validity."


class CountMismatchError(SnapshotRejected):
    rule = "count-mismatch"
    hint = "The sender's agent built an inconsistent snapshot; report it as a bug."


class DigestMismatchError(SnapshotRejected):
    rule = "digest-mismatch"
    hint = "The sender's agent built an inconsistent snapshot; report it as a bug."


class DuplicateRecordError(SnapshotRejected):
    rule = "duplicate-record"
    hint = "Merge records with the same SHA-256 into one before building the snapshot."


# The exchange's other refusals (server.exchange, server.auth)


class AccessDenied(Rejection):
    """The caller's TLS identity may not see or change what it asked for."""

    rule = "access-denied"
    hint = "Check the party's tls_identity and pairings in the server configuration."


class NotFound(Rejection):
    """No snapshot or report of that pairing yet."""

    rule = "not-found"
    hint = "Wait for both parties to push a snapshot of the pairing, then ask again."


class BadReportSignature(Rejection):
    """A party's signature on a report does not verify with its pinned key."""

    rule = "bad-report-signature"
    hint = "Sign the exact report body with the party's pinned signing key."


_S = grpc.StatusCode
# The one table of statuses. Every rejection is listed by itself (tests/test_rejections.py
# enforces it) so that a new rule is given its status deliberately, never by inheritance;
# InvsyncError is the answer for every other error, as before rejections had rules.
STATUS: Mapping[type[InvsyncError], grpc.StatusCode] = {
    InvsyncError: _S.INTERNAL,
    Rejection: _S.INVALID_ARGUMENT,
    SnapshotRejected: _S.INVALID_ARGUMENT,
    IncompleteStream: _S.INVALID_ARGUMENT,
    StreamTooLarge: _S.RESOURCE_EXHAUSTED,
    UnknownPartyError: _S.PERMISSION_DENIED,
    UntrustedSignerError: _S.PERMISSION_DENIED,
    BadSignatureError: _S.PERMISSION_DENIED,
    MalformedSnapshot: _S.INVALID_ARGUMENT,
    PartyMismatchError: _S.PERMISSION_DENIED,
    PairingMismatchError: _S.PERMISSION_DENIED,
    RetiredKeyError: _S.PERMISSION_DENIED,
    KeyAnnouncementError: _S.PERMISSION_DENIED,
    RollbackError: _S.FAILED_PRECONDITION,
    EquivocationError: _S.ALREADY_EXISTS,
    ChainError: _S.FAILED_PRECONDITION,
    ExpiredError: _S.FAILED_PRECONDITION,
    FutureIssuedError: _S.FAILED_PRECONDITION,
    BadValidityError: _S.INVALID_ARGUMENT,
    CountMismatchError: _S.INVALID_ARGUMENT,
    DigestMismatchError: _S.INVALID_ARGUMENT,
    DuplicateRecordError: _S.INVALID_ARGUMENT,
    AccessDenied: _S.PERMISSION_DENIED,
    NotFound: _S.NOT_FOUND,
    BadReportSignature: _S.PERMISSION_DENIED,
}

# rule -> the rejection class that breaks it: what a client may take from a server's metadata.
BY_RULE: Mapping[str, type[Rejection]] = {
    cls.rule: cls for cls in STATUS if issubclass(cls, Rejection)
}


def status_of(error: InvsyncError) -> grpc.StatusCode:
    """The status an error refuses a call with: that of its nearest class in `STATUS`."""
    for cls in type(error).__mro__:
        if issubclass(cls, InvsyncError) and cls in STATUS:
            return STATUS[cls]
    raise AssertionError("unreachable: InvsyncError is in STATUS")


def known_rule(name: str) -> str:
    """`name` when it is a rule this agent knows, else "unknown": only our own names become
    metric labels, never free text from a server (a newer one may have rules we lack)."""
    return name if name in BY_RULE else UNKNOWN_RULE
