"""Exactly one Common Name: a federation client certificate whose subject holds two CNs
(`CN=jprs, CN=secom`) is refused PERMISSION_DENIED on every call, although gRPC's own
`x509_common_name` would show only one of them (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from invsync.agent.exchange.pki import make_federation, new_ca
from invsync.server.localfed import PARTIES, server_process, write_federation
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation
from tests.integration.test_exchange import _rules, _stored_snapshots
from tests.integration.test_tls import calls, channel, jprs_snapshot
from tests.tls_certs import client_certificate, write

TWO_NAMES = "the TLS client certificate has 2 Common Names 'jprs', 'secom', not exactly one"


@pytest.fixture
def federation_with_two_names(tmp_path: Path) -> Iterator[Federation]:
    """A federation whose CA also issued one client certificate naming both jprs and secom."""
    write_federation(tmp_path)
    ca = new_ca()
    make_federation(tmp_path / "tls", "localhost", list(PARTIES), ca=ca)
    write(client_certificate(ca, "jprs", "secom"), tmp_path / "tls", "two-names")
    with server_process(tmp_path) as port:
        yield Federation(tmp_path, port)


def test_a_client_certificate_with_two_common_names_is_denied_every_call(
    federation_with_two_names: Federation,
) -> None:
    fed = federation_with_two_names
    tls = fed.work / "tls"
    env = jprs_snapshot(fed)
    ch = channel(fed, tls / "two-names.crt", tls / "two-names.key")
    errors = calls(pb_grpc.ExchangeStub(ch), env)
    ch.close()
    assert {name: e.code() for name, e in errors.items()} == dict.fromkeys(
        errors, grpc.StatusCode.PERMISSION_DENIED
    )
    assert {name: e.details() for name, e in errors.items()} == dict.fromkeys(errors, TWO_NAMES)
    assert [_rules(e) for e in errors.values()] == [["access-denied"]] * len(errors)
    assert _stored_snapshots(fed) == 0
    # The same CA's one-name certificate for jprs pushes the same snapshot.
    client = fed.client("jprs")
    client.push(env)
    client.close()
    assert _stored_snapshots(fed) == 1
