"""Mutual TLS at the real server: who may connect, and who may act once connected.

A certificate of another CA is refused at the handshake, even with a party's Common Name. A
certificate of the federation CA whose Common Name is no party's `tls_identity` connects but is
refused every call with PERMISSION_DENIED: TLS authenticates any member, not the right one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from invsync.agent.errors import TransportError
from invsync.agent.exchange.backoff import RetryPolicy
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.pki import make_federation
from invsync.agent.exchange.snapshot import to_chunks
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.server.daemon import SERVICE_NAME
from invsync.server.localfed import PARTIES, server_process, write_federation
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation
from tests.integration.test_exchange import _rules, _signed, _snapshot_of, _stored_snapshots

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"
TIMEOUT = 10


@pytest.fixture
def federation_with_mallory(tmp_path: Path) -> Iterator[Federation]:
    """A federation whose CA also issued a client certificate to "mallory", who is no party."""
    write_federation(tmp_path)
    # Re-issue the whole TLS directory from one new CA, before the server reads it.
    make_federation(tmp_path / "tls", "localhost", [*PARTIES, "mallory"])
    with server_process(tmp_path) as port:
        yield Federation(tmp_path, port)


def channel(fed: Federation, cert: Path, key: Path) -> grpc.Channel:
    """A channel trusting the federation's CA, presenting `cert`."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(fed.work / "tls" / "ca.pem").read_bytes(),
        private_key=key.read_bytes(),
        certificate_chain=cert.read_bytes(),
    )
    return grpc.secure_channel(fed.address, credentials)


def jprs_snapshot(fed: Federation) -> Envelope:
    """A valid jprs snapshot, signed with jprs's real key."""
    return _signed(fed, "jprs", _snapshot_of(fed, "jprs", SUBORDINATE, PAIRING))


def calls(stub: pb_grpc.ExchangeStub, env: Envelope) -> dict[str, grpc.RpcError]:
    """Every Exchange method once; the error each one failed with."""
    attempts: dict[str, Callable[[], object]] = {
        "PushSnapshot": lambda: stub.PushSnapshot(to_chunks(env), timeout=TIMEOUT),
        "FetchSnapshot": lambda: list(
            stub.FetchSnapshot(pb.FetchSnapshotRequest(pairing=PAIRING), timeout=TIMEOUT)
        ),
        "GetReport": lambda: stub.GetReport(pb.GetReportRequest(pairing=PAIRING), timeout=TIMEOUT),
        "SubmitReportSignature": lambda: stub.SubmitReportSignature(
            pb.SubmitReportSignatureRequest(
                pairing=PAIRING, signature=pb.Signature(keyid="00" * 32, sig=b"x")
            ),
            timeout=TIMEOUT,
        ),
    }
    errors = {}
    for name, attempt in attempts.items():
        with pytest.raises(grpc.RpcError) as caught:
            attempt()
        errors[name] = caught.value
    return errors


def test_a_client_certificate_of_another_ca_is_refused_at_the_handshake(
    federation: Federation,
) -> None:
    # Another CA's certificate for "jprs": the right Common Name, the wrong issuer.
    other = make_federation(federation.work / "other-tls", "localhost", ["jprs"])["jprs"]
    env = jprs_snapshot(federation)  # even with jprs's real signing key
    ch = channel(federation, other.cert, other.key)
    errors = calls(pb_grpc.ExchangeStub(ch), env)
    ch.close()
    assert {name: e.code() for name, e in errors.items()} == dict.fromkeys(
        errors, grpc.StatusCode.UNAVAILABLE
    )
    assert [_rules(e) for e in errors.values()] == [[]] * len(errors)  # no server answered
    assert _stored_snapshots(federation) == 0
    # The very same snapshot, from jprs's federation certificate, is accepted.
    client = federation.client("jprs")
    client.push(env)
    client.close()
    assert _stored_snapshots(federation) == 1


def test_the_agents_client_reports_the_refused_handshake(federation: Federation) -> None:
    other = make_federation(federation.work / "other-tls", "localhost", ["secom"])["secom"]
    endpoint = ServerEndpoint(
        address=federation.address,
        ca=federation.work / "tls" / "ca.pem",
        cert=other.cert,
        key=other.key,
        signing_keys=(federation.work / "keys" / "server.pub",),
    )
    client = ExchangeClient(endpoint, timeout=TIMEOUT, retry=RetryPolicy(base=0.01, retries=1))
    refused = re.escape(f"{federation.address}: unreachable since ") + r".*GetReport: UNAV"
    with pytest.raises(TransportError, match=refused):
        client.report(PAIRING)
    client.close()


def test_a_federation_certificate_of_no_party_is_denied_every_call(
    federation_with_mallory: Federation,
) -> None:
    fed = federation_with_mallory
    tls = fed.work / "tls"
    env = jprs_snapshot(fed)  # a valid jprs snapshot with jprs's real key, pushed by mallory
    ch = channel(fed, tls / "mallory.crt", tls / "mallory.key")
    errors = calls(pb_grpc.ExchangeStub(ch), env)
    ch.close()
    assert {name: e.code() for name, e in errors.items()} == dict.fromkeys(
        errors, grpc.StatusCode.PERMISSION_DENIED
    )
    not_a_party = "TLS client certificate CN='mallory' is not the tls_identity of any party"
    assert {name: e.details() for name, e in errors.items()} == dict.fromkeys(errors, not_a_party)
    assert [_rules(e) for e in errors.values()] == [["access-denied"]] * len(errors)
    assert _stored_snapshots(fed) == 0
    # The same CA's certificate for jprs works: mallory was refused by party, not by TLS.
    client = fed.client("jprs")
    client.push(env)
    client.close()
    assert _stored_snapshots(fed) == 1


def test_mallory_reads_nothing_once_there_is_something_to_read(
    federation_with_mallory: Federation,
) -> None:
    fed = federation_with_mallory
    jprs = fed.client("jprs")
    jprs.push(jprs_snapshot(fed))
    jprs.close()
    secom = fed.client("secom")
    assert len(secom.fetch_peer_snapshot(PAIRING).payload) > 0  # a member reads it
    secom.close()
    tls = fed.work / "tls"
    ch = channel(fed, tls / "mallory.crt", tls / "mallory.key")
    stub = pb_grpc.ExchangeStub(ch)
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.FetchSnapshot(pb.FetchSnapshotRequest(pairing=PAIRING), timeout=TIMEOUT))
    ch.close()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == (
        "TLS client certificate CN='mallory' is not the tls_identity of any party"
    )


@pytest.mark.parametrize("service", ["", SERVICE_NAME])
def test_health_answers_serving_over_mutual_tls(federation: Federation, service: str) -> None:
    client = federation.client("secom")
    stub = health_pb2_grpc.HealthStub(client.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
    client.close()
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_is_not_served_without_a_client_certificate(federation: Federation) -> None:
    ca = (federation.work / "tls" / "ca.pem").read_bytes()
    ch = grpc.secure_channel(federation.address, grpc.ssl_channel_credentials(ca))
    with pytest.raises(grpc.RpcError) as caught:
        health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    ch.close()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
