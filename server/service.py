"""The gRPC servicer: a thin adapter from gRPC to `Exchange`.

It decodes requests, asks `auth.py` who the caller is, calls the domain method and encodes the
answer. A refused call ends with the status of the error's class (the one table in
`agent.exchange.rejections`), the error's message as the status text, and, for a rejection, its
rule in the trailing metadata `invsync-rule`, which clients read instead of the text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.exchange import body_delta, elision
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.rejections import (
    LOG_SIZE_METADATA_KEY,
    RULE_METADATA_KEY,
    Rejection,
    status_of,
)
from invsync.agent.exchange.snapshot import to_chunks
from invsync.agent.report.body import ReportBody, parse_report_body
from invsync.agent.telemetry.logs import log_context
from invsync.server import metrics, peer_attachment
from invsync.server.auth import NONE_REVOKED, party_of
from invsync.server.client_crl import Revoked
from invsync.server.config import Limits
from invsync.server.exchange import Exchange, LogUpdate
from invsync.server.limits import Limiter
from invsync.server.report_news import ReportWait
from invsync.server.storage import StoredReport
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc

T = TypeVar("T")
# The longest status text a refusal answers with (also what the refusal's log line quotes).
STATUS_CHARS = 1000
log = logging.getLogger("invsync.server")
# Reports a caller names as held that a body delta may be built on (the last named first).
MAX_DELTA_BASES = 2
# Payloads a caller may name as held (GetCheckpointRequest.held_payloads): a client names its
# remembered reports and its last push.
MAX_HELD_PAYLOADS = 16
# The largest report answer that takes what comes beside the report (its log checkpoint, the
# peer's snapshot, the previous or a newer report): every client receives 4 MiB.
ANSWER_WITH_EXTRAS_BYTES = 4 << 20


class ExchangeService(pb_grpc.ExchangeServicer):
    def __init__(
        self,
        exchange: Exchange,
        identities: Mapping[str, str],
        limiter: Limiter | None = None,
        revoked: Revoked = NONE_REVOKED,
    ) -> None:
        self.exchange = exchange
        self.identities = identities  # TLS Common Name -> party
        self.limiter = limiter or Limiter(Limits())  # its watchdog runs once started
        self.revoked = revoked  # the federation CA's revoked client certificates

    def _party(self, context: grpc.ServicerContext) -> str:
        return party_of(context, self.identities, self.revoked)

    def PushSnapshot(
        self, request_iterator: Iterator[pb.SnapshotChunk], context: grpc.ServicerContext
    ) -> pb.Receipt:
        def push() -> bytes:
            party = self._party(context)
            with self.limiter.push(party, context) as watch:
                return self.exchange.push(party, self.limiter.chunks(watch, request_iterator))

        receipt = pb.Receipt(envelope=pb.Envelope.FromString(_guard("PushSnapshot", context, push)))
        held = _log_size_held(context)
        if held:
            self._add_receipt_proof(receipt, self._party(context), held)
        return receipt

    def _add_receipt_proof(self, receipt: pb.Receipt, party: str | None, held: int) -> None:
        """The snapshot is committed: a proof that cannot be made is left out (the agent then
        asks for it), never a failed push."""
        try:
            first, second, proof = self.exchange.receipt_proof(party, receipt.envelope, held)
        except (InvsyncError, DecodeError) as e:
            log.warning("no consistency proof for party=%s's receipt: %s", party, e)
            return
        receipt.consistency[:] = proof
        receipt.consistency_first, receipt.consistency_second = first, second

    def _guard(self, method: str, context: grpc.ServicerContext, call: Callable[[], T]) -> T:
        """`_guard`, the call also under the limiter's total-time cap."""
        with self.limiter.call(context):
            return _guard(method, context, call)

    def FetchSnapshot(
        self, request: pb.FetchSnapshotRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SnapshotChunk]:
        env, full = self._guard(
            "FetchSnapshot",
            context,
            lambda: self.exchange.fetch_peer_snapshot(
                self._party(context),
                request.pairing,
                request.version,
                request.base_sha256,
            ),
        )
        yield from to_chunks(env, full=full)

    def GetReport(self, request: pb.GetReportRequest, context: grpc.ServicerContext) -> pb.Report:
        def answer() -> pb.Report:
            party = self._party(context)
            stored = self._report(request, party, context)
            return self._answer(stored, request, party, with_log=request.HasField("log"))

        return self._guard("GetReport", context, answer)

    def _answer(
        self,
        stored: StoredReport,
        request: pb.GetReportRequest,
        party: str | None,
        *,
        with_log: bool = False,
        body: ReportBody | None = None,
    ) -> pb.Report:
        """The report; its signatures alone for a caller that holds its body, or its body as
        the differences from the last held one this server has (agent.exchange.body_delta);
        with what a co-signing agent reads next if asked and it fits (`_with_extras`; `body`:
        the report's, when the caller parsed it already)."""
        answer = self._body(stored, request)
        if party is None:
            return answer
        held = request.log_size_held
        extra = self._log_for_report(party, request.log) if with_log else None
        if extra is not None and _fits(answer, extra):
            answer.log.CopyFrom(extra)
            held = extra.tree_size  # what the caller holds once it verified this update
        if request.with_peer:
            self._with_extras(answer, stored, request, party, held, body)
        return answer

    def _with_extras(
        self,
        answer: pb.Report,
        stored: StoredReport,
        request: pb.GetReportRequest,
        party: str,
        held: int,
        body: ReportBody | None,
    ) -> None:
        """The peer's snapshot the report names (server.peer_attachment) and the report it
        continues, when the caller does not hold it; each left out if it cannot be made or
        would take the answer past what every client receives (the caller then asks)."""
        try:
            body = body or parse_report_body(stored.envelope.payload)
            peer = peer_attachment.peer_snapshot(self.exchange, party, stored, body, request, held)
            previous = self._previous(stored, body.previous_report, request)
        except InvsyncError as e:
            log.warning("party=%s: nothing with report %s: %s", party, stored.report_id, e)
            return
        if peer is not None and _fits(answer, peer):
            answer.peer.CopyFrom(peer)
        if previous is not None and _fits(answer, previous):
            answer.previous.CopyFrom(previous)

    def _previous(
        self, stored: StoredReport, previous: str | None, request: pb.GetReportRequest
    ) -> pb.Report | None:
        """The report `stored` continues, for a caller that does not hold it (a co-signing
        agent checks against it), with its body maybe as differences from one it holds."""
        if previous is None or previous in request.known or previous == stored.report_id:
            return None
        before = self.exchange.store.report(stored.pairing, previous)
        return self._body(before, request) if before is not None else None

    def _log_for_report(
        self, party: str, ask: pb.GetCheckpointRequest
    ) -> pb.SignedCheckpoint | None:
        """What GetCheckpoint would answer `ask`; None when it cannot be made (the answer is the
        report: the caller then asks for the checkpoint itself)."""
        try:
            return self._log_update(party, ask)
        except InvsyncError as e:
            log.warning("party=%s: no log checkpoint with the report: %s", party, e)
            return None

    def _body(self, stored: StoredReport, request: pb.GetReportRequest) -> pb.Report:
        if stored.report_id in request.known:
            return _report_pb(stored, without_body=True)
        answer = _report_pb(stored)
        for base_id in list(request.known)[-MAX_DELTA_BASES:][::-1]:
            base = self.exchange.store.report(stored.pairing, base_id)
            if base is None:
                continue  # not a report of this pairing: try an older one
            body = stored.envelope.payload
            pieces = body_delta.diff(base.envelope.payload, body)
            if body_delta.worth_sending(pieces, body):
                answer.envelope.ClearField("payload")
                answer.body_delta.base_report_id = base_id
                answer.body_delta.pieces.extend(pieces)
            break
        return answer

    def _report(
        self, request: pb.GetReportRequest, party: str | None, context: grpc.ServicerContext
    ) -> StoredReport:
        wait = None
        if request.wait_seconds and party is not None:
            wait = self._wait(
                context, party, request.wait_naming, request.wait_past, request.wait_seconds
            )
        return self.exchange.report(party, request.pairing, request.report_id, wait)

    def _wait(
        self,
        context: grpc.ServicerContext,
        party: str,
        naming: bytes,
        past: str,
        seconds: int,
    ) -> ReportWait:
        """What a waiting call waits for (server.report_news); a caller that goes away wakes
        its wait, which then ends (ReportWait.alive)."""
        context.add_callback(self.exchange.news.changed)
        return ReportWait(party, naming.hex(), past, float(seconds), alive=context.is_active)

    def SubmitReportSignature(
        self, request: pb.SubmitReportSignatureRequest, context: grpc.ServicerContext
    ) -> pb.Report:
        def answer() -> pb.Report:
            party = self._party(context)
            stored, latest = self._signed(request, party, context)
            reply = _report_pb(stored, without_body=request.without_body)
            if latest is not None and request.HasField("newer"):
                self._with_newer(reply, latest, request, party)
            return reply

        return self._guard("SubmitReportSignature", context, answer)

    def _with_newer(
        self,
        reply: pb.Report,
        latest: StoredReport,
        request: pb.SubmitReportSignatureRequest,
        party: str | None,
    ) -> None:
        """The newer report the signer's wait ended on, if it names the signer's snapshot and
        fits; never a failed call: the signature is stored already."""
        try:
            body = parse_report_body(latest.envelope.payload)
            if request.wait_naming.hex() not in (body.root.digest, body.subordinate.digest):
                return
            newer = self._answer(latest, request.newer, party, body=body)
        except InvsyncError as e:
            log.warning("party=%s: no newer report with the signature: %s", party, e)
            return
        if _fits(reply, newer):
            reply.newer.CopyFrom(newer)

    def _signed(
        self,
        request: pb.SubmitReportSignatureRequest,
        party: str | None,
        context: grpc.ServicerContext,
    ) -> tuple[StoredReport, StoredReport | None]:
        """The report once the signature is added; with wait_seconds, once the rest signed it
        or a newer report on the caller's snapshot came (server.report_news), or time is up.
        With it, the pairing's latest report when that is another one (None otherwise)."""
        sig = Sig(request.signature.keyid, request.signature.sig)
        stored = self.exchange.add_signature(party, request.pairing, request.report_id, sig)
        if not request.wait_seconds or party is None:
            return stored, None
        wait = self._wait(
            context, party, request.wait_naming, request.report_id, request.wait_seconds
        )
        latest = self.exchange.report(party, request.pairing, "", wait)
        stored = self.exchange.report(party, request.pairing, request.report_id)
        return stored, (latest if latest.report_id != stored.report_id else None)

    # The transparency log: any authenticated member may read its hashes and proofs, and the
    # entries of its own pairings (see Exchange.log_entries).

    def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> pb.SignedCheckpoint:
        return self._guard("GetCheckpoint", context, lambda: self._checkpoint(request, context))

    def _checkpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> pb.SignedCheckpoint:
        party = self._party(context)  # a refusal answered as one, under _guard
        asks_more = request.proof_from or request.inclusion_of or request.entries
        if asks_more and not request.tree_size:
            return self._log_update(party, request)
        return pb.SignedCheckpoint(note=self.exchange.checkpoint(party, request.tree_size))

    def _log_update(self, party: str | None, ask: pb.GetCheckpointRequest) -> pb.SignedCheckpoint:
        """The latest checkpoint with what `ask` asks besides (Exchange.log_update), entries
        carrying a payload the caller holds with it cut out."""
        update = self.exchange.log_update(
            party, ask.proof_from, list(ask.inclusion_of), ask.entries
        )
        return _log_update_pb(update, _held(ask.held_payloads))

    def GetLogEntries(
        self, request: pb.GetLogEntriesRequest, context: grpc.ServicerContext
    ) -> pb.LogEntries:
        held = _held(request.held_payloads)
        return self._guard(
            "GetLogEntries",
            context,
            lambda: _elided(  # the stored bytes, never re-serialized; held payloads cut out
                self.exchange.log_entries(self._party(context), request.start, request.end).to_pb(),
                held,
            ),
        )

    def GetInclusionProof(
        self, request: pb.GetInclusionProofRequest, context: grpc.ServicerContext
    ) -> pb.LogProof:
        hashes = self._guard(
            "GetInclusionProof",
            context,
            lambda: self.exchange.inclusion_proof(
                self._party(context), request.index, request.tree_size
            ),
        )
        return pb.LogProof(hashes=hashes)

    def GetConsistencyProof(
        self, request: pb.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> pb.LogProof:
        hashes = self._guard(
            "GetConsistencyProof",
            context,
            lambda: self.exchange.consistency_proof(
                self._party(context), request.first_size, request.second_size
            ),
        )
        return pb.LogProof(hashes=hashes)


def _guard(method: str, context: grpc.ServicerContext, call: Callable[[], T]) -> T:
    """Run `call`, timed as `method`; an InvsyncError aborts the call with its status."""
    try:
        with metrics.RPC_DURATION.labels(method).time(), log_context(peer=context.peer()):
            return call()
    except InvsyncError as e:
        peer = context.peer()
        log.warning("refused peer=%s: %s", peer, _text(e), extra={"peer": peer})
        _abort(context, e)


def _abort(context: grpc.ServicerContext, error: InvsyncError) -> NoReturn:
    """End the call with the error's status; a rejection also names its rule, as data."""
    if isinstance(error, Rejection):
        context.set_trailing_metadata(((RULE_METADATA_KEY, error.rule),))
    context.abort(status_of(error), _text(error))


def _text(error: InvsyncError) -> str:
    """The error's message as a status text or log field: bounded, because it may quote what a
    sender sent, and gRPC refuses trailing metadata (the status text among it) past 8 KiB."""
    return bounded(error, STATUS_CHARS)


def _log_size_held(context: grpc.ServicerContext) -> int:
    """The log size a pushing agent holds, as its call metadata says (0: not said, or not a
    number: no proof is sent, and the agent asks for it)."""
    for key, value in context.invocation_metadata() or ():
        if key == LOG_SIZE_METADATA_KEY and isinstance(value, str) and value.isdigit():
            return int(value)
    return 0


def _log_update_pb(update: LogUpdate, held: Collection[str]) -> pb.SignedCheckpoint:
    """The answer; entries carrying a payload the caller holds come with it cut out."""
    answer = pb.SignedCheckpoint(
        note=update.note,
        tree_size=update.size,
        consistency=update.consistency,
        inclusion=[pb.LogProof(hashes=proof) for _, proof in update.inclusion],
    )
    if update.entries is not None:
        answer.entries.CopyFrom(_elided(update.entries.to_pb(), held))
    return answer


def _fits(answer: pb.Report, extra: Message) -> bool:
    """Whether `answer` with `extra` stays within what every client receives (gRPC's default
    4 MiB: a client's own limit only grows from there), less a margin for the field's tag."""
    return answer.ByteSize() + extra.ByteSize() + 64 <= ANSWER_WITH_EXTRAS_BYTES


def _held(payloads: Sequence[str]) -> frozenset[str]:
    """The payload digests a caller names as held, as many as a client ever names."""
    return frozenset(payloads[:MAX_HELD_PAYLOADS])


def _elided(entries: pb.LogEntries, held: Collection[str]) -> pb.LogEntries:
    """`entries` with the payloads the caller holds cut out (agent.exchange.elision)."""
    hashes = entries.leaf_hashes
    for index, leaf in enumerate(entries.entries):
        leaf_hash = hashes[index] if index < len(hashes) else b""
        shorter, elided = elision.cut(index, leaf, held, leaf_hash)
        if elided is not None:
            entries.entries[index] = shorter
            entries.elided.append(elided)
    return entries


def _report_pb(stored: StoredReport, *, without_body: bool = False) -> pb.Report:
    """A stored report; `without_body`: its signatures alone, for a caller that holds the body."""
    envelope = _envelope_pb(stored.envelope)
    if without_body:
        envelope.ClearField("payload")
    return pb.Report(report_id=stored.report_id, envelope=envelope)


def _envelope_pb(env: Envelope) -> pb.Envelope:
    return env.to_pb()
