"""The agent's client of the exchange service: mutual TLS, a deadline on every call, chunked pushes.

gRPC failures become `TransportError`s that name the server and the status, so an operator
can tell "server down" from "server refused this snapshot, and why". A refusal's rule comes as
data, in the trailing metadata `invsync-rule` (`agent.exchange.rejections`), never from the
status text. A call that fails for want
of a server (UNAVAILABLE, DEADLINE_EXCEEDED) is retried with exponential backoff, full jitter and
a cap (`agent.exchange.backoff`); a refusal (PERMISSION_DENIED, INVALID_ARGUMENT, ...) never is.
When the retries run out, `Unreachable` says since when the server has not answered. A server that
goes silent mid-call without closing the connection is noticed by keepalive
(`agent.exchange.keepalive`) within its configured bound, however long the call's deadline.

The transparency log's calls hand back what the server sent, unverified: the signed checkpoint
note (`agent.exchange.checkpoint` opens it), the stored entries byte for byte (only those of this
party's pairings; every leaf hash, `agent.exchange.logrange`), and proof hashes
(`agent.exchange.tlog` checks them).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar, cast

import grpc

from invsync.agent.errors import TransportError
from invsync.agent.exchange import body_delta, elision
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.keepalive import Keepalive, client_options
from invsync.agent.exchange.logrange import LogRange
from invsync.agent.exchange.rejections import (
    BY_RULE,
    LOG_SIZE_METADATA_KEY,
    RULE_METADATA_KEY,
    UNKNOWN_RULE,
    known_rule,
)
from invsync.agent.exchange.served_log import ServedLog
from invsync.agent.exchange.snapshot import Served, served_from_chunks, to_chunks
from invsync.agent.telemetry import metrics
from invsync.agent.times import rfc3339
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc

T = TypeVar("T")


RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# The slowest a server is expected to take in a snapshot, decoding and storing it: a 60 MB
# full snapshot of 100,000 certificates gets 60 s beyond the call timeout.
PUSH_BYTES_PER_SECOND = 1_000_000
# Reports kept by id: a cycle asks again for the one its new report continues (by id).
REPORTS_REMEMBERED = 8
# Snapshots pushed whose payloads are kept: the log watch after a push reads it back. One: a
# daemon holds the last payload it pushed until the next push (a delta, once steady).
PUSHES_REMEMBERED = 1
# Peer snapshots fetched, named as held to the log calls that follow (their entries then come
# without them): the one a report check compares, and the one before it.
FETCHES_REMEMBERED = 2
# Without an `invsync-rule` trailer (an older or foreign server), these statuses still say the
# server read the request and said no: retrying the same request cannot help. With the trailer,
# the rule alone decides (agent.exchange.rejections holds the one status table).
REFUSALS = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


@dataclass(frozen=True)
class LogAsk:
    """What a log watch asks with the latest checkpoint (`ExchangeClient.checkpoint`): the
    size of the checkpoint it holds and the entries whose inclusion proofs it needs; asked with
    a report, the watch then needs no call of its own."""

    proof_from: int
    inclusion_of: tuple[int, ...] = ()


@dataclass(frozen=True)
class PeerHeld:
    """What a co-signing agent holds of its peer, for a report answer to bring the rest: the
    payload SHA-256 of the peer snapshot it holds (b"": none) and its log checkpoint's size."""

    base_sha256: bytes
    log_size: int


class ExchangeClient:
    def __init__(
        self,
        endpoint: ServerEndpoint,
        timeout: float,
        max_snapshot_bytes: int = 256 << 20,
        *,
        retry: RetryPolicy | None = None,
        keepalive: Keepalive | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.address = endpoint.address
        self.timeout = timeout
        self.max_snapshot_bytes = max_snapshot_bytes
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.clock = clock
        # What the last GetCheckpoint answer carried beside its note.
        self._served = ServedLog()
        # Reports served or held, by id, the latest last (see `report`).
        self._reports: dict[str, pb.Report] = {}
        # The payloads of the last snapshots pushed, by SHA-256 (hex): the log watch reads them
        # back in our own entries (agent.exchange.elision).
        self._pushed: dict[str, bytes] = {}
        # The peer snapshot that came with the last report, by (pairing, version, base).
        self._attached: dict[tuple[str, int, bytes], Served] = {}
        self._fetched: dict[str, bytes] = {}  # peer payloads fetched, by SHA-256 (hex)
        # The checkpoint note that came with the last report call, for the log watch it was
        # asked for (see `report`): answered once, to the same ask, before any other report call.
        self._log_note: tuple[LogAsk, bytes] | None = None
        # A newer report that came with the last signature's answer, with what it answers: the
        # next report call of that pairing, naming that snapshot, waiting past that signed id.
        self._newer: _Newer | None = None
        credentials = grpc.ssl_channel_credentials(
            root_certificates=endpoint.ca.read_bytes(),
            private_key=endpoint.key.read_bytes(),
            certificate_chain=endpoint.cert.read_bytes(),
        )
        self.keepalive = keepalive or Keepalive()
        options = [*client_options(self.keepalive), _receive_limit(max_snapshot_bytes)]
        self.channel = grpc.secure_channel(self.address, credentials, options=options)
        self.stub = pb_grpc.ExchangeStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def push(self, env: Envelope, log_size_held: int = 0) -> Envelope:
        """Push a signed snapshot; returns the server's signed receipt.

        The server answers once it decoded and stored every record, so a large (full) snapshot
        gets more time than the call timeout: retried on its deadline, it would be decoded again
        each time (at 100,000 certificates a cold push was sent three times)."""
        timeout = self.timeout + len(env.payload) / PUSH_BYTES_PER_SECOND
        # With the log size held, the answer carries the consistency proof the receipt's
        # checkpoint needs: `consistency_proof` then gives it without a call.
        metadata = ((LOG_SIZE_METADATA_KEY, str(log_size_held)),) if log_size_held else None
        receipt = self._call(
            "PushSnapshot",
            lambda: self.stub.PushSnapshot(to_chunks(env), timeout=timeout, metadata=metadata),
        )
        if receipt.consistency_first:
            sizes = (receipt.consistency_first, receipt.consistency_second)
            self._served = self._served.with_consistency(sizes, list(receipt.consistency))
        self._pushed[hashlib.sha256(env.payload).hexdigest()] = env.payload
        while len(self._pushed) > PUSHES_REMEMBERED:
            del self._pushed[next(iter(self._pushed))]
        return Envelope.from_pb(receipt.envelope)

    def fetch_peer_snapshot(
        self, pairing: str, version: int = 0, base_sha256: bytes = b""
    ) -> Served:
        """The peer's snapshot `version` (0: latest). `base_sha256` names the peer snapshot this
        agent holds: a delta on it comes alone, any other delta with its whole set."""
        attached = self._attached.pop((pairing, version, base_sha256), None)
        if attached is not None:
            return attached
        request = pb.FetchSnapshotRequest(pairing=pairing, version=version, base_sha256=base_sha256)
        served = self._call(
            "FetchSnapshot",
            lambda: served_from_chunks(
                self.stub.FetchSnapshot(request, timeout=self.timeout), self.max_snapshot_bytes
            ),
        )
        self._fetched[hashlib.sha256(served.payload).hexdigest()] = served.payload
        while len(self._fetched) > FETCHES_REMEMBERED:
            del self._fetched[next(iter(self._fetched))]
        return served

    def prefetch_peer_snapshot(self, pairing: str, version: int, base_sha256: bytes = b"") -> None:
        """Fetch the peer's snapshot now, for the `fetch_peer_snapshot` call with the same
        arguments that follows, and name it as held to the log calls in between: its log entry
        then comes without it (a first snapshot is 60 MB at 100,000 certificates). Nothing is
        checked here: the later fetch is verified by its caller like any other."""
        key = (pairing, version, base_sha256)
        if key not in self._attached:  # it came with the report
            self._attached[key] = self.fetch_peer_snapshot(pairing, version, base_sha256)

    def peer_has_snapshot(self, pairing: str) -> bool:
        """Whether the server holds a snapshot of the peer in `pairing`, without receiving it:
        the call ends once its first chunk came (a first snapshot at 100,000 certificates is
        60 MB to send and compress, to learn only that it exists; the server still reads it
        from its store). Nothing received is trusted or kept."""
        request = pb.FetchSnapshotRequest(pairing=pairing)

        def first_chunk() -> bool:
            answer = self.stub.FetchSnapshot(request, timeout=self.timeout)
            try:
                for _ in answer:  # the server's refusal (NOT_FOUND) is raised here
                    break
            finally:
                answer.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
            return True

        try:
            return self._call("FetchSnapshot", first_chunk)
        except NotFoundYet:
            return False

    def report(
        self,
        pairing: str,
        report_id: str = "",
        *,
        naming: str = "",
        past: str = "",
        wait_seconds: int = 0,
        peer: PeerHeld | None = None,
        log: LogAsk | None = None,
    ) -> pb.Report:
        """A report of the pairing: `report_id`, or the latest. With `wait_seconds`, the server
        answers once the latest names our snapshot of payload SHA-256 `naming` (hex) and, if
        `past` is given, is another report or that one fully signed; or when the time is up.

        A report asked for by id that this client was served before is answered from memory:
        its body never changes (callers by id read the body and the server's signature), and
        the one a new report continues is the one served the cycle before (or came with the
        new one). A newer report that came with our signature's answer (`sign_report`) answers
        the next call of that pairing waiting past the report signed on the same snapshot.

        With `peer` (what this agent holds of the peer), the server may send with the report
        the peer's snapshot it names and the proof of that snapshot's checkpoint: the next
        `fetch_peer_snapshot` of it and `consistency_proof` between them answer from here.
        With `log`, the log's latest checkpoint and what that log watch asks besides come too:
        the next `checkpoint` with the same ask, and the calls it spares, answer from here,
        until the next report call."""
        self._log_note = None  # a note of an earlier call is never served to this one's watch
        stashed, self._newer = self._newer, None
        if report_id and report_id in self._reports:
            return self._reports[report_id]
        if stashed is not None and stashed.answers(pairing, naming, past) and wait_seconds:
            return stashed.report
        request = pb.GetReportRequest(
            pairing=pairing,
            report_id=report_id,
            wait_naming=bytes.fromhex(naming),
            wait_past=past,
            wait_seconds=wait_seconds,
        )
        self._say_held(request, peer)
        if log is not None:
            request.log.CopyFrom(self._log_request(log))
        timeout = self.timeout + wait_seconds
        answer = self._call("GetReport", lambda: self.stub.GetReport(request, timeout=timeout))
        return self._received(pairing, answer, peer is not None, log)

    def _say_held(self, request: pb.GetReportRequest, peer: PeerHeld | None) -> None:
        """Fill in what a report request says this client holds: report bodies, and with
        `peer` the peer's snapshot and the log size."""
        request.known[:] = list(self._reports)
        if peer is not None:
            request.with_peer = True
            request.peer_base_sha256 = peer.base_sha256
            request.log_size_held = peer.log_size

    def _log_request(
        self, log: LogAsk, *, entries: bool = True, tree_size: int = 0
    ) -> pb.GetCheckpointRequest:
        """A GetCheckpoint request for `log`, naming the payloads held when entries are asked."""
        return pb.GetCheckpointRequest(
            tree_size=tree_size,
            proof_from=log.proof_from,
            inclusion_of=log.inclusion_of,
            entries=entries,
            held_payloads=self._held() if entries else [],
        )

    def _received(
        self, pairing: str, answer: pb.Report, with_peer: bool, log: LogAsk | None = None
    ) -> pb.Report:
        """A report answer made whole and kept: its body rebuilt (or asked for whole), what
        came with it kept for the calls it answers."""
        if not answer.envelope.payload and answer.HasField("body_delta"):
            self._rebuild(answer)
            if not answer.envelope.payload:  # it did not rebuild to its id: ask for it whole
                whole = pb.GetReportRequest(pairing=pairing, report_id=answer.report_id)
                answer = self._call(
                    "GetReport", lambda: self.stub.GetReport(whole, timeout=self.timeout)
                )
        if log is not None and answer.HasField("log"):
            self._log_note = (log, answer.log.note)
            self._served = ServedLog.of(
                answer.log,
                log.proof_from,
                log.inclusion_of,
                self._payload_of,
                self.max_snapshot_bytes,
            )
        if with_peer:
            self._attached = {}  # only what comes with this answer: nothing older is served
            if answer.HasField("peer"):
                self._attach(pairing, answer.peer)
            if answer.HasField("previous"):  # asked for by id next: answered from what is kept
                self._remember_previous(answer.previous)
        _without_extras(answer)  # what was not asked for is dropped, and nothing is kept nested
        self._remember(answer)
        return answer

    def _remember_previous(self, served: pb.Report) -> None:
        """Keep the report a new one continues, if its body is (or rebuilds to) its id."""
        previous = pb.Report(report_id=served.report_id, envelope=served.envelope)
        if served.HasField("body_delta"):
            previous.body_delta.CopyFrom(served.body_delta)
            self._rebuild(previous)
        self._remember(previous)

    def _attach(self, pairing: str, peer: pb.PeerSnapshot) -> None:
        """Keep what came with a report for the calls it answers (unchecked, like any answer:
        the callers verify the snapshot and the proof)."""
        if peer.consistency_first:
            sizes = (peer.consistency_first, peer.consistency_second)
            self._served = self._served.with_consistency(sizes, list(peer.consistency))
        env = Envelope.from_pb(peer.envelope)
        if not env.payload or len(env.payload) > self.max_snapshot_bytes:
            return  # held here, or fetched (and refused there if FetchSnapshot would)
        served = Served(env.payload_type, env.payload, env.signatures)
        self._attached = {(pairing, peer.version, peer.base_sha256): served}

    def _rebuild(self, answer: pb.Report) -> None:
        """Put back a body served as its differences from one held here, if it rebuilds to
        exactly the body whose SHA-256 is the report's id; else leave it out."""
        delta = answer.body_delta
        base = self._reports.get(delta.base_report_id)
        if base is None:
            return
        # A body of new findings grows by what comes literally; runs of the base repeated
        # past twice its size are a server making this client copy without end.
        literal = sum(len(piece.literal) for piece in delta.pieces)
        limit = min(self.max_snapshot_bytes, 2 * len(base.envelope.payload) + literal)
        body = body_delta.rebuild(base.envelope.payload, delta.pieces, limit)
        if body is not None and hashlib.sha256(body).hexdigest() == answer.report_id:
            answer.envelope.payload = body
        answer.ClearField("body_delta")

    def hold_report(self, env: Envelope) -> None:
        """A signed report this agent holds (one it wrote): asked for by id, it is answered
        from here; as the latest, the server sends its signatures alone."""
        rid = hashlib.sha256(env.payload).hexdigest()
        self._remember(pb.Report(report_id=rid, envelope=env.to_pb()))

    def _remember(self, report: pb.Report) -> None:
        """Put back a body the server left out, and keep the report by id: only a body whose
        SHA-256 is its id, since what is kept answers later calls and rebuilds later bodies
        (the reader checks the server's signature on what it gets either way). A body left
        out that is not held here stays out: the reader then refuses the empty payload."""
        held = self._reports.pop(report.report_id, None)
        if not report.envelope.payload and held is not None:
            report.envelope.payload = held.envelope.payload
        body = report.envelope.payload
        if body and hashlib.sha256(body).hexdigest() == report.report_id:
            self._reports[report.report_id] = report
        while len(self._reports) > REPORTS_REMEMBERED:
            del self._reports[next(iter(self._reports))]

    def _held(self) -> list[str]:
        """The SHA-256 of each payload `_payload_of` answers, as a request names them."""
        return [*self._reports, *self._pushed, *self._fetched]

    def _payload_of(self, digest: str) -> bytes | None:
        """A payload held here by its SHA-256 (hex): a report's body (the id is its digest), a
        snapshot pushed or a peer's fetched (agent.exchange.elision puts it back into log
        entries)."""
        held = self._reports.get(digest)
        if held is not None:
            return held.envelope.payload
        return self._pushed.get(digest) or self._fetched.get(digest)

    def sign_report(
        self,
        pairing: str,
        report_id: str,
        sig: Sig,
        *,
        naming: str = "",
        wait_seconds: int = 0,
        peer: PeerHeld | None = None,
    ) -> pb.Report:
        """Add our signature; the report as it then stands. With `wait_seconds`, the server
        answers once every signer signed it, or a newer report names our snapshot of payload
        SHA-256 `naming` (hex), or the time is up: a signer that is not the last needs no
        other call to learn the rest signed. A newer report comes with the answer, as `report`
        with `peer` would get it, and answers the next `report` waiting past this one."""
        request = pb.SubmitReportSignatureRequest(
            pairing=pairing,
            report_id=report_id,
            signature=pb.Signature(keyid=sig.keyid, sig=sig.sig),
            without_body=report_id in self._reports,
            wait_seconds=wait_seconds,
            wait_naming=bytes.fromhex(naming),
        )
        if wait_seconds:
            request.newer.SetInParent()  # asked for even when nothing is held
            self._say_held(request.newer, peer)
        self._newer = None
        timeout = self.timeout + wait_seconds
        answer = self._call(
            "SubmitReportSignature",
            lambda: self.stub.SubmitReportSignature(request, timeout=timeout),
        )
        newer = pb.Report()
        if wait_seconds and answer.HasField("newer"):
            newer.CopyFrom(answer.newer)
        _without_extras(answer)
        self._remember(answer)
        if newer.report_id and newer.report_id != report_id:
            received = self._received(pairing, newer, peer is not None)
            self._newer = _Newer(pairing, naming, report_id, received)
        return answer

    def checkpoint(
        self,
        tree_size: int = 0,
        proof_from: int = 0,
        inclusion_of: Sequence[int] = (),
        entries: bool = False,
    ) -> bytes:
        """The log's latest signed checkpoint note, or the one signed at `tree_size`.

        For the latest, the server can answer in the same call what a log watch asks next: the
        consistency proof from `proof_from`, the inclusion proofs of `inclusion_of` and (with
        `entries`) the entries from `proof_from` on. `consistency_proof`, `inclusion_proof`
        and `log_range` then give them without a call; each is checked by its reader as if it
        had been asked for alone."""
        came = self._log_note
        self._log_note = None
        ask = LogAsk(proof_from, tuple(inclusion_of))
        if came is not None and came[0] == ask and entries and not tree_size:
            return came[1]  # with the last report: what it carried is served already
        request = self._log_request(ask, entries=entries, tree_size=tree_size)
        answer = self._call(
            "GetCheckpoint", lambda: self.stub.GetCheckpoint(request, timeout=self.timeout)
        )
        self._served = ServedLog.of(
            answer, proof_from, inclusion_of, self._payload_of, self.max_snapshot_bytes
        )
        return answer.note

    def log_entries(self, start: int, end: int) -> list[bytes]:
        """The log's entries start <= index < end as stored (serialized LogEntry messages), empty
        bytes for those of pairings this party is not in; the server may answer only the first
        part of a range of large entries."""
        return list(self.log_range(start, end).entries)

    def log_range(self, start: int, end: int) -> LogRange:
        """Entries start <= index < end with every leaf hash (`LogRange`), unchecked: call its
        `check()` before parsing an entry. Within what the last `checkpoint(entries=True)`
        carried, answered from it: there only this party's own entries and its pairings' chain
        resets are shown (all its readers, the log watch and the restore, read)."""
        carried = self._served.log_range(start, end)
        if carried is not None:
            return carried
        served = self._log_entries(start, end, self._held())
        whole = elision.restored(served, self._payload_of, self.max_snapshot_bytes)
        if whole is None:  # a cut not undone here: the entries asked for whole
            whole = self._log_entries(start, end, [])
        return LogRange.from_pb(start, whole)

    def _log_entries(self, start: int, end: int, held: list[str]) -> pb.LogEntries:
        request = pb.GetLogEntriesRequest(start=start, end=end, held_payloads=held)
        return self._call(
            "GetLogEntries", lambda: self.stub.GetLogEntries(request, timeout=self.timeout)
        )

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        served = self._served.inclusion.get((index, tree_size))
        if served is not None:
            return served
        request = pb.GetInclusionProofRequest(index=index, tree_size=tree_size)
        answer = self._call(
            "GetInclusionProof", lambda: self.stub.GetInclusionProof(request, timeout=self.timeout)
        )
        return list(answer.hashes)

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        served = self._served.consistency.get((first_size, second_size))
        if served is not None:
            return served
        request = pb.GetConsistencyProofRequest(first_size=first_size, second_size=second_size)
        answer = self._call(
            "GetConsistencyProof",
            lambda: self.stub.GetConsistencyProof(request, timeout=self.timeout),
        )
        return list(answer.hashes)

    def _call(self, method: str, call: Callable[[], T]) -> T:
        """`call()`, retried while the server is unreachable; `call` must rebuild its request."""
        since: datetime | None = None
        waits = self.retry.delays(self.rng)
        for attempt in range(len(waits) + 1):
            try:
                with metrics.CLIENT_RPC_DURATION.labels(method).time():
                    return call()
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, grpc.Call) else None
                if code not in RETRIED:
                    raise rpc_error(self.address, method, e) from e
                since = since or self.clock()
                if attempt == len(waits):
                    raise Unreachable(
                        self.address, since, attempt + 1, rpc_error("", method, e)
                    ) from e
                self.sleep(waits[attempt])
        raise AssertionError("unreachable code: the loop returns or raises")


@dataclass(frozen=True)
class _Newer:
    """A report that came with the answer to our signature of `signed` (see `sign_report`)."""

    pairing: str
    naming: str
    signed: str
    report: pb.Report

    def answers(self, pairing: str, naming: str, past: str) -> bool:
        """Whether it is what a report call waiting past `past` on this snapshot asks for."""
        return (pairing, naming, past) == (self.pairing, self.naming, self.signed)


def _without_extras(answer: pb.Report) -> None:
    """Clear what may come beside a report, once taken (or not asked for)."""
    for extra in ("log", "peer", "previous", "newer"):
        answer.ClearField(extra)


def _receive_limit(max_snapshot_bytes: int) -> tuple[str, int]:
    """gRPC's 4 MiB answer limit raised to fit one log entry holding the largest snapshot we
    accept: base64 in the entry's JSON envelope grows it by a third, plus its signatures."""
    return (
        "grpc.max_receive_message_length",
        max(4 << 20, max_snapshot_bytes * 4 // 3 + (1 << 20)),
    )


class NotFoundYet(TransportError):
    """The server has nothing of that kind yet (e.g. no report before both sides pushed)."""

    hint = "Wait for the peer to push its snapshot; the server reconciles as soon as both are in."


class Unreachable(TransportError):
    """The server did not answer, through every retry: the caller's state must stay unchanged."""

    hint = "Check that the exchange server is running and reachable; the next cycle retries."

    def __init__(self, address: str, since: datetime, attempts: int, last: TransportError) -> None:
        super().__init__(
            f"{address}: unreachable since {rfc3339(since)} ({attempts} attempts); last error{last}"
        )
        self.address = address
        self.since = since
        self.attempts = attempts


class Refused(TransportError):
    """The server answered and refused the request (the message says why)."""

    hint = "Read the server's reason; the same request will be refused again."
    # A refusal that names no rule this agent knows (an older or foreign server's) still counts.
    rule: str | None = UNKNOWN_RULE


def rejection_rule(error: TransportError) -> str | None:
    """The rule a refused call broke, as a metric label; None if the server never refused it."""
    return error.rule


def rpc_error(address: str, method: str, e: grpc.RpcError) -> TransportError:
    code = e.code() if isinstance(e, grpc.Call) else None
    details = e.details() if isinstance(e, grpc.Call) else str(e)
    name = code.name if code is not None else "UNKNOWN"
    rule = _metadata_rule(e)
    kind: type[TransportError] = TransportError
    if code == grpc.StatusCode.NOT_FOUND:
        kind = NotFoundYet
    elif rule is not None or code in REFUSALS:
        kind = Refused
    error = kind(f"{address}: {method}: {name}: {details}")
    _name_rule(error, rule)
    return error


def _metadata_rule(e: grpc.RpcError) -> str | None:
    """The rule the server's trailing metadata names (see `known_rule`); None without one."""
    if not isinstance(e, grpc.Call):
        return None
    # As a Call its items are (key, value) pairs; the stubs' RpcError calls them otherwise.
    metadata = cast(grpc.Call, e).trailing_metadata()
    for key, value in metadata or ():  # None when the call ended without any
        if key == RULE_METADATA_KEY:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return known_rule(text)
    return None


def _name_rule(error: TransportError, rule: str | None) -> None:
    if rule is None:
        return
    error.rule = rule
    if rule in BY_RULE:
        error.hint = BY_RULE[rule].hint  # the rule's own advice beats a generic one
