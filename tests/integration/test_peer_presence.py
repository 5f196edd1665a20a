"""Whether the peer has pushed, asked of the real server without receiving its snapshot
(`ExchangeClient.peer_has_snapshot`): a report saying the peer sent nothing is refused once it
has, and at 100,000 certificates its first snapshot is 60 MB the agent does not need."""

from __future__ import annotations

import hashlib

import pytest

from invsync.agent.daemon.cycle import Agent
from invsync.agent.daemon.report_check import PeerArrived
from invsync.agent.exchange.client import Refused
from invsync.agent.exchange.snapshot import decode_header
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import DEMO_PAIRING, Federation, make_agent, pairing_of

pytestmark = pytest.mark.integration


def test_the_peers_snapshot_is_known_to_exist_without_being_received(
    federation: Federation,
) -> None:
    secom = federation.client("secom")
    try:
        assert secom.peer_has_snapshot(DEMO_PAIRING) is False
        jprs = make_agent(federation, "jprs")
        try:
            jprs.collect()
            jprs.push(pairing_of(jprs))
        finally:
            jprs.close()
        assert secom.peer_has_snapshot(DEMO_PAIRING) is True
        # The call cancelled after its first chunk leaves the channel as it was.
        assert len(secom.fetch_peer_snapshot(DEMO_PAIRING).payload) > 0
        with pytest.raises(
            Refused,
            match=r"FetchSnapshot: PERMISSION_DENIED: party 'secom' is not a member of "
            r"pairing 'nii-jprs'",
        ):
            secom.peer_has_snapshot("nii-jprs")
    finally:
        secom.close()


def test_a_report_saying_the_peer_sent_nothing_is_refused_once_it_has(
    federation: Federation,
) -> None:
    secom, jprs = make_agent(federation, "secom"), make_agent(federation, "jprs")
    try:
        pairing = pairing_of(secom)
        secom.checker._check_peer_absent(pairing)  # nothing pushed: the report may say so
        jprs.collect()
        jprs.push(pairing_of(jprs))
        with pytest.raises(
            PeerArrived,
            match=r"refusing to sign report on pairing 'secom-jprs': it says jprs has sent no "
            r"snapshot, but the server holds one",
        ):
            secom.checker._check_peer_absent(pairing)
    finally:
        secom.close()
        jprs.close()


def test_a_prefetched_peer_snapshot_is_fetched_once_and_named_as_held(
    agents: dict[str, Agent], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fetched before the log watch, the peer's snapshot is what the check's fetch gets, and
    the log calls in between name it as held (its entry then comes without it)."""
    client = agents["secom"].client
    calls: list[pb.FetchSnapshotRequest] = []
    real = client.stub.FetchSnapshot

    def counted(request: pb.FetchSnapshotRequest, timeout: float) -> object:
        calls.append(request)
        return real(request, timeout=timeout)

    monkeypatch.setattr(client.stub, "FetchSnapshot", counted)
    client.prefetch_peer_snapshot(DEMO_PAIRING, 1)
    served = client.fetch_peer_snapshot(DEMO_PAIRING, 1)
    assert len(calls) == 1 and decode_header(served.payload).party == "jprs"
    digest = hashlib.sha256(served.payload).hexdigest()
    assert digest in client._held() and client._payload_of(digest) == served.payload
    assert len(client.fetch_peer_snapshot(DEMO_PAIRING, 1).payload) > 0  # fetched again
    assert len(calls) == 2
