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
| `stream-too-slow` | RESOURCE_EXHAUSTED | a push stream idle too long, or past the time cap |
| `too-many-streams` | RESOURCE_EXHAUSTED | the party already has its most push streams open |
| `server-busy` | RESOURCE_EXHAUSTED | in-flight pushes already hold the server's byte budget |
| `unknown-party` | PERMISSION_DENIED | the TLS identity maps to no allowed party |
| `untrusted-signer` | PERMISSION_DENIED | no signature by a key in force for the party |
| `bad-signature` | PERMISSION_DENIED | a pinned key's signature does not verify over the bytes |
| `malformed-snapshot` | INVALID_ARGUMENT | the signed payload is not a well-formed snapshot |
| `version-out-of-range` | INVALID_ARGUMENT | version 0, or 2^63 or more (the store holds less) |
| `party-mismatch` | PERMISSION_DENIED | the header names another party than the TLS identity |
| `pairing-mismatch` | PERMISSION_DENIED | unknown pairing, not a member, or the wrong role |
| `retired-key` | PERMISSION_DENIED | signed by a key the party rotated away from alone |
| `bad-key-announcement` | PERMISSION_DENIED | an announced key did not sign, or was retired |
| `rollback` | FAILED_PRECONDITION | version below the last accepted one |
| `version-jump` | FAILED_PRECONDITION | version more than the allowed step above the last one |
| `equivocation` | ALREADY_EXISTS | the last accepted version again, with other bytes |
| `broken-chain` | FAILED_PRECONDITION | previous_digest is not the last accepted payload's digest |
| `expired` | FAILED_PRECONDITION | the snapshot's expires_at has passed |
| `issued-in-future` | FAILED_PRECONDITION | issued_at beyond now plus the allowed clock skew |
| `bad-validity` | INVALID_ARGUMENT | expires_at not after issued_at, or too far after it |
| `count-mismatch` | INVALID_ARGUMENT | record_count differs from the records |
| `digest-mismatch` | INVALID_ARGUMENT | records_digest or records_root is not their Merkle root |
| `duplicate-record` | INVALID_ARGUMENT | a record appears twice |
| `access-denied` | PERMISSION_DENIED | the caller may not see or change what it asked for |
| `not-found` | NOT_FOUND | no snapshot or report of that pairing yet |
| `bad-report-signature` | PERMISSION_DENIED | a report signature fails with the keys in force |
| `log-range` | INVALID_ARGUMENT | a log request's range, index or sizes are malformed |
| `untrusted-input` | INVALID_ARGUMENT | the base of the agent's refusals; never raised itself |
| `wrong-payload-type` | INVALID_ARGUMENT | a served envelope is not of the payload type asked for |
| `bad-server-signature` | PERMISSION_DENIED | a receipt or report lacks a pinned server signature |
| `malformed-input` | INVALID_ARGUMENT | a signed receipt or report does not parse |
| `receipt-mismatch` | FAILED_PRECONDITION | a receipt is not for the snapshot pushed |
| `report-mismatch` | INVALID_ARGUMENT | a report of another pairing, or under another id |
| `peer-version-mismatch` | INVALID_ARGUMENT | another peer snapshot version than asked for |
| `peer-rollback` | FAILED_PRECONDITION | a peer snapshot older than the last one verified |
| `peer-equivocation` | ALREADY_EXISTS | the peer's last verified version, other bytes |
| `checkpoint-rollback` | FAILED_PRECONDITION | a log checkpoint of a smaller tree than the last |
| `log-inconsistent` | FAILED_PRECONDITION | the log does not extend the last one verified |
| `log-split-view` | FAILED_PRECONDITION | the peer's log checkpoint is not consistent with ours |
| `retired-server-key` | PERMISSION_DENIED | a server key signing where it is not in force |
| `bad-server-key-announcement` | INVALID_ARGUMENT | a server key announcement proves no new key |

The agent's refusals (`agent.exchange.trusted`) are raised on the agent's side about what the
server sent it; their statuses matter only if a server ever relays one. An error that is no
rejection (a store or internal failure) answers INTERNAL, without a rule.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.model.findings import Finding

# The trailing metadata key that carries a refusal's rule.
RULE_METADATA_KEY = "invsync-rule"
# The call metadata key in which a push names the log size its agent holds (pb.Receipt).
LOG_SIZE_METADATA_KEY = "invsync-log-size"
# What a client counts a refusal under when the server named no rule it knows.
UNKNOWN_RULE = "unknown"
# The longest a rejection's message gets, sender text quoted in it included.
MESSAGE_CHARS = 1000


class Rejection(InvsyncError):
    """The exchange refused a request. `rule` is its stable name, shown in logs and metrics."""

    rule = "rejected"
    hint = "Read the server's reason; the same request will be refused again."

    def __str__(self) -> str:
        # Messages quote what a sender sent; however much that was, the message stays small.
        return bounded(super().__str__(), MESSAGE_CHARS)


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


class StreamTooSlow(IncompleteStream):
    """A push stream went silent past the server's idle timeout, or past its total-time cap; it
    was cancelled and nothing was stored."""

    rule = "stream-too-slow"
    hint = (
        "Check the link to the server; push again. A server operator may raise "
        "stream_idle_seconds or max_request_seconds."
    )


class TooManyStreams(Rejection):
    """The party already had as many push streams open as the server allows one party."""

    rule = "too-many-streams"
    hint = "Wait for the party's pushes under way to end, then push again."


class ServerBusy(Rejection):
    """The pushes under way already held the server's budget of bytes in flight; this push was
    refused as it streamed, and nothing was stored."""

    rule = "server-busy"
    hint = (
        "Push again later (the agent's next cycle does). A server operator may raise "
        "server.max_inflight_bytes."
    )


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


class VersionOutOfRangeError(MalformedSnapshot):
    """A header version the store and the wire cannot hold: 0, or 2^63 or more."""

    rule = "version-out-of-range"
    hint = "Versions run from 1 to 2^63 - 1; the sender's agent built an impossible version."


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


class VersionJumpError(SnapshotRejected):
    """A version further above the last accepted one (or above 0, for a pairing's first
    snapshot) than the server's max_version_step: a fast-forward that would lock the pairing."""

    rule = "version-jump"
    hint = (
        "Push the next version after the last one the server accepted (its receipt names it); "
        "a version may step at most the server's max_version_step above it."
    )


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


class BadLogRequest(Rejection):
    """A request to the transparency log is malformed: an empty or reversed range, a range over
    the per-request cap, an index outside its tree, or tree sizes out of order."""

    rule = "log-range"
    hint = (
        "Ask for start < end with at most 256 entries per request, an index below the tree "
        "size, and proof sizes 0 < first <= second; the message names the request."
    )


# The agent's refusals of what the exchange served it (agent.exchange.trusted), in their order


class UntrustedInput(Rejection):
    """Something the exchange served failed a check of the agent's trusted state: nothing of it
    was kept and the state is as it was. `finding`, when set, is what the refusal means for the
    pairing (agent.model.findings), for the agent to record."""

    rule = "untrusted-input"
    hint = "The exchange server sent something this agent cannot trust; see the message."

    def __init__(self, message: str, finding: Finding | None = None) -> None:
        super().__init__(message)
        self.finding = finding

    def __str__(self) -> str:
        return f"refused [{self.rule}]: {super().__str__()}"


class PayloadTypeError(UntrustedInput):
    rule = "wrong-payload-type"
    hint = (
        "The server answered with another kind of signed document than asked for: a server of "
        "another version, or one replaying what it signed for another purpose."
    )


class ServerSignatureError(UntrustedInput):
    rule = "bad-server-signature"
    hint = (
        "Pin the exchange server's signing key in [server] signing_keys; if it is pinned, "
        "something else than that server signed what was served."
    )


class MalformedInput(UntrustedInput):
    rule = "malformed-input"
    hint = "The server signed a document this agent cannot read; check both versions."


class ReceiptMismatchError(UntrustedInput):
    rule = "receipt-mismatch"
    hint = (
        "The server's receipt is not for the snapshot pushed; the snapshot stays pending and "
        "is pushed again. Report the server if it persists."
    )


class ReportMismatchError(UntrustedInput):
    rule = "report-mismatch"
    hint = "The server served a report of another pairing or under another id; report it."


class PeerVersionMismatchError(UntrustedInput):
    rule = "peer-version-mismatch"
    hint = "The server served another version of the peer's snapshot than asked for; report it."


class PeerRollbackError(UntrustedInput):
    rule = "peer-rollback"
    hint = (
        "The server served an older peer snapshot than one this agent already verified "
        "(rollback or freeze); nothing was co-signed. Compare with the peer out of band."
    )


class PeerEquivocationError(UntrustedInput):
    rule = "peer-equivocation"
    hint = (
        "Two different peer snapshots carry one version; nothing was co-signed. Ask the peer "
        "which one it signed, and keep both as evidence."
    )


class CheckpointRollbackError(UntrustedInput):
    rule = "checkpoint-rollback"
    hint = (
        "The server's log shrank since the last checkpoint this agent verified; keep both "
        "checkpoints as evidence of a rewritten log."
    )


class LogInconsistentError(UntrustedInput):
    """The exchange's log failed the agent's check (agent.daemon.log_watch): its checkpoint, a
    consistency or inclusion proof, or the agent's own entry. Carries a `log-inconsistent`
    finding; nothing is co-signed while it lasts."""

    rule = "log-inconsistent"
    hint = (
        "The exchange's log is not the append-only log it must be; nothing was co-signed. Keep "
        "the agent's database (it holds the last verified checkpoint) as evidence and tell the "
        "exchange operator; the next cycle checks again."
    )


class LogSplitViewError(UntrustedInput):
    """The peer's snapshot carries a log checkpoint that does not fit the agent's own view.
    Carries a `log-split-view` finding; nothing is co-signed while it lasts."""

    rule = "log-split-view"
    hint = (
        "The exchange showed the two parties different logs (a split view); nothing was "
        "co-signed. Compare the last verified checkpoints with the peer out of band and take "
        "them to the exchange operator."
    )


class RetiredServerKeyError(ServerSignatureError):
    """The exchange server's signature is by a key not in force where the document stands in
    its log: a key it retired with `invsync server keys rotate`, or one not announced yet."""

    rule = "retired-server-key"
    hint = (
        "The exchange server rotated its signing key, and something was signed after the "
        "rotation with the key it retired: keep it as evidence and tell the exchange operator, "
        "whose old key may be in other hands."
    )


class ServerKeyAnnouncementError(UntrustedInput):
    """A SERVER_KEY log entry that does not prove the server's new key."""

    rule = "bad-server-key-announcement"
    hint = (
        "The exchange's log announces a new server key that this agent cannot verify; keep the "
        "entry and its checkpoint as evidence and tell the exchange operator. Until then, "
        "nothing the server signs with that key is trusted."
    )


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
    StreamTooSlow: _S.RESOURCE_EXHAUSTED,
    TooManyStreams: _S.RESOURCE_EXHAUSTED,
    ServerBusy: _S.RESOURCE_EXHAUSTED,
    UnknownPartyError: _S.PERMISSION_DENIED,
    UntrustedSignerError: _S.PERMISSION_DENIED,
    BadSignatureError: _S.PERMISSION_DENIED,
    MalformedSnapshot: _S.INVALID_ARGUMENT,
    VersionOutOfRangeError: _S.INVALID_ARGUMENT,
    PartyMismatchError: _S.PERMISSION_DENIED,
    PairingMismatchError: _S.PERMISSION_DENIED,
    RetiredKeyError: _S.PERMISSION_DENIED,
    KeyAnnouncementError: _S.PERMISSION_DENIED,
    RollbackError: _S.FAILED_PRECONDITION,
    VersionJumpError: _S.FAILED_PRECONDITION,
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
    BadLogRequest: _S.INVALID_ARGUMENT,
    UntrustedInput: _S.INVALID_ARGUMENT,
    PayloadTypeError: _S.INVALID_ARGUMENT,
    ServerSignatureError: _S.PERMISSION_DENIED,
    MalformedInput: _S.INVALID_ARGUMENT,
    ReceiptMismatchError: _S.FAILED_PRECONDITION,
    ReportMismatchError: _S.INVALID_ARGUMENT,
    PeerVersionMismatchError: _S.INVALID_ARGUMENT,
    PeerRollbackError: _S.FAILED_PRECONDITION,
    PeerEquivocationError: _S.ALREADY_EXISTS,
    CheckpointRollbackError: _S.FAILED_PRECONDITION,
    LogInconsistentError: _S.FAILED_PRECONDITION,
    LogSplitViewError: _S.FAILED_PRECONDITION,
    RetiredServerKeyError: _S.PERMISSION_DENIED,
    ServerKeyAnnouncementError: _S.INVALID_ARGUMENT,
}

# rule -> the rejection class that breaks it: what a client may take from a server's metadata.
BY_RULE: Mapping[str, type[Rejection]] = {
    cls.rule: cls for cls in STATUS if issubclass(cls, Rejection)
}

# The rules of the agent's own refusals: the values of the refused-inputs metric's `rule` label.
REFUSAL_RULES: tuple[str, ...] = tuple(
    rule for rule, cls in BY_RULE.items() if issubclass(cls, UntrustedInput)
)


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
