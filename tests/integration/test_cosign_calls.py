"""A co-signing agent's calls and bytes (issue 13), over a real server process and mutual TLS.

SubmitReportSignature as a long poll: the first signer, asking to wait, is answered once the
last signer signed, so it needs no other call to learn that the report is complete; without
waiting it is answered at once. A log watch's entries come without the payloads the caller
holds (agent/exchange/elision.py), put back byte for byte; a new report comes as its
differences from one held (agent/exchange/body_delta.py), with the peer's snapshot it names
(server/peer_attachment.py); and answers travel gzip-compressed."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.pairing import Relay
from invsync.agent.daemon import cosign
from invsync.agent.daemon.cycle import Agent
from invsync.agent.errors import InvsyncError
from invsync.agent.exchange import body_delta
from invsync.agent.exchange.checkpoint import open_checkpoint
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.envelope import Envelope, Sig, pae
from invsync.agent.exchange.keys import load_signing_key
from invsync.agent.exchange.served_log import ServedLog
from invsync.agent.report.body import REPORT_PAYLOAD_TYPE, parse_report_body
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import Federation, await_report, make_agent, pairing_of
from tests.integration.test_log import PAIRING, SERVER, _pinned, _snapshot

pytestmark = pytest.mark.integration


def _signature(fed: Federation, party: str, report: pb.Report) -> Sig:
    key = load_signing_key(fed.work / "keys" / f"{party}.key")
    return Sig(key.keyid, key.sign(pae(REPORT_PAYLOAD_TYPE, report.envelope.payload)))


def _pushed(fed: Federation, secom: ExchangeClient, jprs: ExchangeClient) -> Envelope:
    secom.push(_snapshot(fed, "secom"))
    await_report(secom, 1, 0)
    sent = _snapshot(fed, "jprs")
    jprs.push(sent)
    await_report(jprs, 1, 1)
    return sent


def test_the_first_signer_waiting_is_answered_once_the_last_signed(
    federation: Federation,
) -> None:
    secom, jprs = federation.client("secom"), federation.client("jprs")
    try:
        naming = hashlib.sha256(_pushed(federation, secom, jprs).payload).hexdigest()
        report = jprs.report(PAIRING)
        answers: list[pb.Report] = []
        sig = _signature(federation, "jprs", report)
        waiting = threading.Thread(
            target=lambda: answers.append(
                jprs.sign_report(PAIRING, report.report_id, sig, naming=naming, wait_seconds=15)
            )
        )
        waiting.start()
        time.sleep(1)
        assert answers == []  # signed by the server and jprs only: still waiting
        started = time.monotonic()
        last = secom.sign_report(PAIRING, report.report_id, _signature(federation, "secom", report))
        assert len(last.envelope.signatures) == 3  # the last signer has it complete at once
        waiting.join(10)
        assert time.monotonic() - started < 5
        (answer,) = answers
        assert answer.report_id == report.report_id
        assert len(answer.envelope.signatures) == 3
        assert answer.envelope.payload == report.envelope.payload  # put back from memory
    finally:
        secom.close()
        jprs.close()


def test_a_signer_that_does_not_wait_is_answered_at_once(federation: Federation) -> None:
    secom, jprs = federation.client("secom"), federation.client("jprs")
    try:
        _pushed(federation, secom, jprs)
        report = jprs.report(PAIRING)
        started = time.monotonic()
        answer = jprs.sign_report(PAIRING, report.report_id, _signature(federation, "jprs", report))
        assert time.monotonic() - started < 2
        assert len(answer.envelope.signatures) == 2  # the server's and jprs's
    finally:
        secom.close()
        jprs.close()


def test_the_log_watch_gets_its_own_entries_without_the_payloads_it_holds(
    federation: Federation,
) -> None:
    secom, jprs = federation.client("secom"), federation.client("jprs")
    stranger = federation.client("jprs")  # the same party, holding no report
    try:
        snapshot = hashlib.sha256(_pushed(federation, secom, jprs).payload).hexdigest()
        report = jprs.report(PAIRING)
        jprs.sign_report(PAIRING, report.report_id, _signature(federation, "jprs", report))
        body_text = len(base64.b64encode(report.envelope.payload))

        def answer(known: list[str]) -> pb.SignedCheckpoint:
            request = pb.GetCheckpointRequest(entries=True, held_payloads=known)
            return jprs.stub.GetCheckpoint(request, timeout=10)

        whole, cut = answer([]), answer([report.report_id])
        assert [e.payload_sha256 for e in cut.entries.elided] == [report.report_id]
        both = answer([snapshot, report.report_id])  # and the snapshot it pushed
        assert [e.payload_sha256 for e in both.entries.elided] == [snapshot, report.report_id]
        # The body's base64 text, less what saying where it was cut costs.
        assert whole.entries.ByteSize() - cut.entries.ByteSize() >= body_text - 100

        # The client names what it holds (the report served, the snapshot pushed) and puts back.
        note = jprs.checkpoint(entries=True)
        size = open_checkpoint(note, SERVER, _pinned(federation)).size
        served = jprs.log_range(0, size)
        served.check()
        asked = stranger.log_entries(0, size)  # asked for whole, by a client holding nothing
        shown = [i for i, entry in enumerate(served.entries) if entry]  # our own entries
        assert shown and all(served.entries[i] == asked[i] for i in shown)
        kinds = [pb.LogEntry.FromString(e).kind for e in served.entries if e]
        assert pb.LOG_ENTRY_KIND_REPORT_SIGNATURE in kinds
        # GetLogEntries cuts the same payloads, and the client puts them back the same way.
        request = pb.GetLogEntriesRequest(start=0, end=size, held_payloads=[snapshot])
        assert [e.payload_sha256 for e in jprs.stub.GetLogEntries(request).elided] == [snapshot]
        jprs._served = ServedLog()  # nothing served with a checkpoint: the entries asked for
        assert jprs.log_entries(0, size) == list(asked)
    finally:
        for client in (secom, jprs, stranger):
            client.close()


def _second_report(agents: dict[str, Agent], federation: Federation) -> str:
    """JPRS drops a certificate and pushes version 2: the server's next report, mostly the
    first one's findings again. Its id."""
    pem = federation.work / "data" / "jprs_ca_certificates.pem"
    text = pem.read_text()
    pem.write_text(text[: text.rindex("-----BEGIN CERTIFICATE-----")])
    jprs = agents["jprs"]
    jprs.collect()
    assert jprs.push(pairing_of(jprs)) == 2
    await_report(jprs.client, 1, 2)
    return jprs.client.report(PAIRING).report_id


def _answers(client: ExchangeClient, monkeypatch: pytest.MonkeyPatch) -> list[pb.Report]:
    """Every GetReport answer as it came from the server (a copy), before the client used it."""
    seen: list[pb.Report] = []
    real = client.stub.GetReport

    def spied(request: pb.GetReportRequest, timeout: float) -> pb.Report:
        answer = real(request, timeout=timeout)
        seen.append(pb.Report.FromString(answer.SerializeToString()))
        return answer

    monkeypatch.setattr(client.stub, "GetReport", spied)
    return seen


def test_a_new_report_comes_as_its_differences_from_the_one_held(
    agents: dict[str, Agent], federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"].client
    first = secom.report(PAIRING)  # held from here on
    second = _second_report(agents, federation)
    answers = _answers(secom, monkeypatch)
    report = secom.report(PAIRING)
    (answer,) = answers
    assert answer.body_delta.base_report_id == first.report_id and not answer.envelope.payload
    literal = sum(len(piece.literal) for piece in answer.body_delta.pieces)
    assert literal < len(report.envelope.payload) * body_delta.WORTH_IT
    assert report.report_id == second
    assert hashlib.sha256(report.envelope.payload).hexdigest() == second
    assert not report.HasField("body_delta")


def test_differences_that_do_not_rebuild_the_body_mean_asking_for_it_whole(
    agents: dict[str, Agent], federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"].client
    secom.report(PAIRING)
    second = _second_report(agents, federation)
    answers = _answers(secom, monkeypatch)
    spied = secom.stub.GetReport

    def garbled(request: pb.GetReportRequest, timeout: float) -> pb.Report:
        answer: pb.Report = spied(request, timeout=timeout)
        for piece in answer.body_delta.pieces:
            if piece.literal:  # a server that sends one wrong byte
                piece.literal = piece.literal[:-1] + bytes([piece.literal[-1] ^ 1])
                break
        return answer

    monkeypatch.setattr(secom.stub, "GetReport", garbled)
    report = secom.report(PAIRING)
    assert [bool(a.body_delta.pieces) for a in answers] == [True, False]  # then asked whole
    assert answers[1].envelope.payload and report.report_id == second
    assert hashlib.sha256(report.envelope.payload).hexdigest() == second


def _altered(payload: bytes) -> bytes:
    return payload[:-1] + bytes([payload[-1] ^ 1])


def _answers_changed(
    client: ExchangeClient, monkeypatch: pytest.MonkeyPatch, change: Callable[[pb.Report], None]
) -> None:
    """A server whose GetReport answers `change` alters on the way."""
    real = client.stub.GetReport

    def changed(request: pb.GetReportRequest, timeout: float) -> pb.Report:
        answer: pb.Report = real(request, timeout=timeout)
        change(answer)
        return answer

    monkeypatch.setattr(client.stub, "GetReport", changed)


def _calls(client: ExchangeClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods the client calls on the server from here on."""
    called: list[str] = []
    for method in ("GetReport", "FetchSnapshot", "GetConsistencyProof", "GetLogEntries"):
        real = getattr(client.stub, method)

        def spied(*args: object, _real: Any = real, _name: str = method, **kwargs: object) -> Any:
            called.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(client.stub, method, spied)
    return called


def test_the_report_brings_the_peer_snapshot_it_names(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"]
    calls = _calls(secom.client, monkeypatch)
    secom.cosign(pairing_of(secom), wait_seconds=10)
    assert "FetchSnapshot" not in calls and calls.count("GetReport") == 1
    assert secom.store.has_cosigned(secom.client.report(PAIRING).report_id)


def test_a_peer_snapshot_altered_on_the_way_with_the_report_is_refused(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"]

    def altered(answer: pb.Report) -> None:
        if answer.HasField("peer"):  # a server that serves another inventory than jprs signed
            answer.peer.envelope.payload = _altered(answer.peer.envelope.payload)

    _answers_changed(secom.client, monkeypatch, altered)
    refused = (
        r"^snapshot rejected \[bad-signature\]: signature by key [0-9a-f]{64} pinned for "
        r"party 'jprs' does not verify over the received payload$"
    )
    with pytest.raises(InvsyncError, match=refused):  # as if FetchSnapshot had served it
        secom.cosign(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned(secom.client.report(PAIRING).report_id)


def test_answers_travel_compressed(agents: dict[str, Agent], federation: Federation) -> None:
    """A report body is JSON: on the wire (TLS records, counted by a relay) it takes a fraction
    of its size. Since reports list their certificates (hex SHA-256s and serials, which
    compress less than prose) the demo's report takes 0.29 of its size; uncompressed it would
    take more than all of it. Half leaves room for a keepalive frame on a loaded machine."""
    body = len(agents["jprs"].client.report(PAIRING).envelope.payload)
    relay = Relay(federation.port)
    through = federation.client("jprs", address=f"127.0.0.1:{relay.port}")
    try:
        through.checkpoint()  # the connection and TLS handshake, counted apart
        _, before, _ = relay.counts()
        assert len(through.report(PAIRING).envelope.payload) == body > 5_000
        _, after, _ = relay.counts()
    finally:
        through.close()
        relay.close()
    assert after - before < body / 2


METHODS = (
    "PushSnapshot",
    "FetchSnapshot",
    "GetReport",
    "SubmitReportSignature",
    "GetCheckpoint",
    "GetLogEntries",
    "GetInclusionProof",
    "GetConsistencyProof",
)


def _counted(agent: Agent) -> Counter[str]:
    """Every call the agent's client makes from here on, by method (set on its stub alone, so
    that two agents in two threads count apart)."""
    counts: Counter[str] = Counter()
    for method in METHODS:
        real = getattr(agent.client.stub, method)

        def spied(*args: object, _real: Any = real, _name: str = method, **kwargs: object) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        setattr(agent.client.stub, method, spied)
    return counts


def _steady_cycle(federation: Federation, party: str, out: dict[str, object]) -> None:
    """One cycle of a fresh agent process: push a new version, co-sign until complete."""
    agent = make_agent(federation, party)
    try:
        counts = _counted(agent)
        agent.push(pairing_of(agent))
        out[party] = (agent.settle(pairing_of(agent), wait_seconds=30), counts)
    finally:
        agent.close()


def _signed_by(client: ExchangeClient, root: int, sub: int, signatures: int) -> bool:
    body = parse_report_body(client.report(PAIRING).envelope.payload)
    latest = client.report(PAIRING)
    named = (body.root.version, body.subordinate.version) == (root, sub)
    return named and len(latest.envelope.signatures) >= signatures


def test_a_steady_cycle_takes_at_most_four_calls_a_side(
    agents: dict[str, Agent], federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13's target. The first to push signs the report on its new snapshot and the
    peer's old one, and waits in that call: the report on both new snapshots comes with its
    answer. Each side's log watch comes with its first report, and the proof of the peer's
    checkpoint with each report, even when the peer's snapshot is one held already. Push,
    report, sign (and sign again for the first): no GetCheckpoint, log entries, proofs or
    snapshots asked for, in two cycles (the second checks checkpoints both headers carry)."""
    for agent in agents.values():  # version 1 of both co-signed: the steady state
        agent.cosign(pairing_of(agent), wait_seconds=10)
    # secom's signature call waits for jprs's whole cycle: however slow the machine, in one call.
    monkeypatch.setattr(cosign, "LONG_POLL_SECONDS", 60)
    for version in (2, 3):
        out: dict[str, object] = {}
        first = threading.Thread(target=_steady_cycle, args=(federation, "secom", out))
        first.start()
        observer = federation.client("jprs")
        try:
            deadline = time.monotonic() + 30
            while not _signed_by(observer, version, version - 1, 2):  # the server's, secom's
                assert time.monotonic() < deadline, "secom did not co-sign its first report"
                time.sleep(0.1)
        finally:
            observer.close()
        _steady_cycle(federation, "jprs", out)
        first.join(60)
        secom, jprs = out["secom"], out["jprs"]
        assert isinstance(secom, tuple) and isinstance(jprs, tuple)
        assert secom[0].complete and jprs[0].complete
        assert secom[0].report_id == jprs[0].report_id
        assert secom[1] == {"PushSnapshot": 1, "GetReport": 1, "SubmitReportSignature": 2}
        assert jprs[1] == {"PushSnapshot": 1, "GetReport": 1, "SubmitReportSignature": 1}


def test_a_log_checkpoint_altered_with_the_report_is_refused_before_signing(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"]

    def altered(answer: pb.Report) -> None:
        if answer.HasField("log"):  # a server that shows this agent another log
            origin, size, root, *rest = answer.log.note.split(b"\n")
            answer.log.note = b"\n".join([origin, size, _altered(root), *rest])

    _answers_changed(secom.client, monkeypatch, altered)
    refused = (
        r"^refused \[log-inconsistent\]: pairing 'secom-jprs': the log's latest checkpoint: "
        r"checkpoint: the signature by pinned key demo-exchange does not verify$"
    )
    with pytest.raises(InvsyncError, match=refused):
        secom.settle(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned(secom.client.report(PAIRING).report_id)


def test_the_log_watch_runs_when_the_report_call_fails(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that refuses the report call does not spare itself the log watch."""
    secom = agents["secom"]
    calls = _calls(secom.client, monkeypatch)

    checkpoint = secom.client.stub.GetCheckpoint
    watched: list[pb.GetCheckpointRequest] = []

    def counted(request: pb.GetCheckpointRequest, timeout: float) -> pb.SignedCheckpoint:
        watched.append(request)
        return checkpoint(request, timeout=timeout)

    monkeypatch.setattr(secom.client.stub, "GetCheckpoint", counted)

    def refused(*args: object, **kwargs: object) -> pb.Report:
        raise InvsyncError("refused")

    monkeypatch.setattr(secom.client, "report", refused)
    with pytest.raises(InvsyncError, match=r"^refused$"):
        secom.settle(pairing_of(secom), wait_seconds=10)
    assert len(watched) == 1 and watched[0].entries  # the watch asked for itself
    assert calls == []
    assert secom.store.trusted_state(PAIRING) is not None


def test_a_previous_report_altered_on_the_way_is_asked_for_by_id(
    agents: dict[str, Agent], federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh agent holds no report: the one the report continues comes with it. Altered, it
    is not kept (its body does not hash to its id), and the check asks for it by id."""
    fresh = make_agent(federation, "secom")
    try:
        calls = _calls(fresh.client, monkeypatch)
        came: list[str] = []

        def altered(answer: pb.Report) -> None:
            if answer.HasField("previous") and answer.previous.envelope.payload:
                came.append(answer.previous.report_id)
                answer.previous.envelope.payload = _altered(answer.previous.envelope.payload)

        _answers_changed(fresh.client, monkeypatch, altered)
        rid = fresh.cosign(pairing_of(fresh), wait_seconds=10)
        assert came and fresh.store.has_cosigned(rid)
        assert calls.count("GetReport") == 2  # the report, then the previous one by id
    finally:
        fresh.close()


def _newer_injected(
    client: ExchangeClient, monkeypatch: pytest.MonkeyPatch, newer: pb.Report
) -> None:
    """A server whose signature answers carry `newer`, and that does not wait."""
    real = client.stub.SubmitReportSignature

    def injecting(request: pb.SubmitReportSignatureRequest, timeout: float) -> pb.Report:
        request.wait_seconds = 0
        answer: pb.Report = real(request, timeout=timeout)
        answer.newer.CopyFrom(newer)
        return answer

    monkeypatch.setattr(client.stub, "SubmitReportSignature", injecting)


def test_a_newer_report_with_the_signature_answers_only_a_wait_past_that_signature(
    federation: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    secom, jprs = federation.client("secom"), federation.client("jprs")
    try:
        naming = hashlib.sha256(_pushed(federation, secom, jprs).payload).hexdigest()
        report = jprs.report(PAIRING)
        stand_in = pb.Report(report_id="cd" * 32, envelope=report.envelope)
        _newer_injected(jprs, monkeypatch, stand_in)
        calls = _calls(jprs, monkeypatch)
        sig = _signature(federation, "jprs", report)
        jprs.sign_report(PAIRING, report.report_id, sig, naming=naming, wait_seconds=5)
        # Another wait (the next cycle's first, past nothing) goes to the server, and the
        # stand-in is gone for good.
        assert jprs.report(PAIRING, naming=naming, wait_seconds=1).report_id == report.report_id
        assert calls == ["GetReport"]
        jprs.sign_report(PAIRING, report.report_id, sig, naming=naming, wait_seconds=5)
        served = jprs.report(PAIRING, naming=naming, past=report.report_id, wait_seconds=1)
        assert served.report_id == stand_in.report_id and calls == ["GetReport"]
        assert jprs.report(PAIRING, naming=naming, past=report.report_id, wait_seconds=1)
        assert calls == ["GetReport", "GetReport"]  # served once only
    finally:
        secom.close()
        jprs.close()


def test_a_newer_report_altered_with_the_signature_is_refused(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    secom = agents["secom"]
    report = secom.client.report(PAIRING)
    envelope = pb.Envelope()
    envelope.CopyFrom(report.envelope)
    envelope.payload = _altered(envelope.payload)
    _newer_injected(secom.client, monkeypatch, pb.Report(report_id="cd" * 32, envelope=envelope))
    refused = (
        r"^refused \[bad-server-signature\]: the exchange server \(report\): 0 of 1 required "
        r"signatures verified; invalid signature by trusted key [0-9a-f]{64}$"
    )
    with pytest.raises(InvsyncError, match=refused):
        secom.settle(pairing_of(secom), wait_seconds=10)
    assert not secom.store.has_cosigned("cd" * 32)
