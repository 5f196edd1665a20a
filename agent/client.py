"""The agent's client of the exchange service: mutual TLS, a deadline on every call, chunked pushes.

gRPC failures become `TransportError`s that name the server and the status, so an operator
can tell "server down" from "server refused this snapshot, and why".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from agent.config import ServerEndpoint
from agent.envelope import Envelope, Sig
from agent.errors import TransportError
from agent.snapshot import from_chunks, to_chunks
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc

T = TypeVar("T")


class ExchangeClient:
    def __init__(
        self, endpoint: ServerEndpoint, timeout: float, max_snapshot_bytes: int = 256 << 20
    ) -> None:
        self.address = endpoint.address
        self.timeout = timeout
        self.max_snapshot_bytes = max_snapshot_bytes
        credentials = grpc.ssl_channel_credentials(
            root_certificates=endpoint.ca.read_bytes(),
            private_key=endpoint.key.read_bytes(),
            certificate_chain=endpoint.cert.read_bytes(),
        )
        self.channel = grpc.secure_channel(self.address, credentials, options=_options())
        self.stub = pb_grpc.ExchangeStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def push(self, env: Envelope) -> Envelope:
        """Push a signed snapshot; returns the server's signed receipt."""
        receipt = self._call(
            "PushSnapshot", lambda: self.stub.PushSnapshot(to_chunks(env), timeout=self.timeout)
        )
        return Envelope.from_pb(receipt.envelope)

    def fetch_peer_snapshot(self, pairing: str, version: int = 0) -> Envelope:
        request = pb.FetchSnapshotRequest(pairing=pairing, version=version)
        return self._call(
            "FetchSnapshot",
            lambda: from_chunks(
                self.stub.FetchSnapshot(request, timeout=self.timeout), self.max_snapshot_bytes
            ),
        )

    def report(self, pairing: str, report_id: str = "") -> pb.Report:
        request = pb.GetReportRequest(pairing=pairing, report_id=report_id)
        return self._call("GetReport", lambda: self.stub.GetReport(request, timeout=self.timeout))

    def sign_report(self, pairing: str, report_id: str, sig: Sig) -> pb.Report:
        request = pb.SubmitReportSignatureRequest(
            pairing=pairing,
            report_id=report_id,
            signature=pb.Signature(keyid=sig.keyid, sig=sig.sig),
        )
        return self._call(
            "SubmitReportSignature",
            lambda: self.stub.SubmitReportSignature(request, timeout=self.timeout),
        )

    def _call(self, method: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as e:
            raise rpc_error(self.address, method, e) from e


class NotFoundYet(TransportError):
    """The server has nothing of that kind yet (e.g. no report before both sides pushed)."""

    hint = "Wait for the peer to push its snapshot; the server reconciles as soon as both are in."


def rpc_error(address: str, method: str, e: grpc.RpcError) -> TransportError:
    code = e.code() if isinstance(e, grpc.Call) else None
    details = e.details() if isinstance(e, grpc.Call) else str(e)
    name = code.name if code is not None else "UNKNOWN"
    kind = NotFoundYet if code == grpc.StatusCode.NOT_FOUND else TransportError
    return kind(f"{address}: {method}: {name}: {details}")


def _options() -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.ping_timeout_ms", 10_000),
    ]
