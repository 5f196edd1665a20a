"""A real server process and real agent processes over mutual TLS on loopback."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from grpc_health.v1 import health_pb2, health_pb2_grpc

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.agent.errors import TransportError
from invsync.agent.exchange.client import NotFoundYet, Refused, rejection_rule
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.keys import load_signing_key
from invsync.agent.exchange.receipt import decode_receipt
from invsync.agent.exchange.rejections import RollbackError, UntrustedSignerError
from invsync.agent.exchange.snapshot import build_payload, sign_snapshot, to_chunks
from invsync.agent.model.snapshot import ROOT, SUBORDINATE
from invsync.agent.report.body import parse_report_body, read_report_file, verify_report
from invsync.server.localfed import command
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc
from tests.integration.conftest import Federation, await_report

BUG_1695993 = {
    "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62",
    "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4",
}

pytestmark = pytest.mark.integration


def _snapshot_of(fed: Federation, party: str, role: str, pairing: str = "secom-jprs") -> bytes:
    now = datetime.now(UTC)
    return build_payload(
        party=party,
        pairing=pairing,
        role=role,
        version=1,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        records=[],
    )


def _signed(fed: Federation, party: str, payload: bytes) -> Envelope:
    return sign_snapshot(payload, load_signing_key(fed.work / "keys" / f"{party}.key"))


def _stored_snapshots(fed: Federation) -> int:
    with sqlite3.connect(fed.work / "state" / "server.db") as db:
        return int(db.execute("select count(*) from snapshots").fetchone()[0])


def _run_both_agents(federation: Federation) -> list[str]:
    """Both agents' --once cycles, at the same time, as separate processes."""
    procs = [
        subprocess.Popen(
            command("agent", "run", "--config", str(federation.work / f"{p}.toml"), "--once"),
            cwd=federation.work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for p in ("secom", "jprs")
    ]
    outputs = [proc.communicate(timeout=120)[0].decode() for proc in procs]
    # The demo's reports hold error findings (bug 1695993): --once exits 1.
    assert [proc.returncode for proc in procs] == [EXIT_FINDINGS, EXIT_FINDINGS], outputs
    return outputs


def _run_changed_then_peer(federation: Federation, *, changed: str, peer: str) -> str:
    """The changed party pushes; the unchanged peer's cycle then co-signs the new report.
    Returns the changed party's output.

    Run at once, the peer might settle on the last complete report before the push and exit,
    leaving the new report to its next cycle; a test needs the order fixed.
    """
    out = federation.work / f"{changed}-cycle.log"
    with out.open("w") as log:
        first = subprocess.Popen(
            command("agent", "run", "--config", str(federation.work / f"{changed}.toml"), "--once"),
            cwd=federation.work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "pushed secom-jprs snapshot" not in out.read_text():
            assert time.monotonic() < deadline and first.poll() is None, out.read_text()
            time.sleep(0.1)
        # The report on the new version is made off the push: the peer must settle on it.
        pushed = int(out.read_text().split("pushed secom-jprs snapshot version ")[1].split()[0])
        client = federation.client(peer)
        try:
            versions = (pushed, None) if changed == "secom" else (None, pushed)
            await_report(client, *versions)
        finally:
            client.close()
        second = command(
            "agent", "run", "--config", str(federation.work / f"{peer}.toml"), "--once"
        )
        assert subprocess.run(second, cwd=federation.work, timeout=120).returncode == EXIT_FINDINGS
        assert first.wait(120) == EXIT_FINDINGS, out.read_text()
    finally:
        if first.poll() is None:
            first.kill()
    return out.read_text()


def _latest_reports(federation: Federation) -> list[Path]:
    reports = (federation.work / "reports").glob("*/*.report.json")
    return sorted(reports, key=lambda p: p.stat().st_mtime)[-2:]


def test_full_cycle_ends_with_a_report_carrying_three_valid_signatures(
    federation: Federation,
) -> None:
    _run_both_agents(federation)
    reports = sorted((federation.work / "reports").glob("*/*.report.json"))
    assert len(reports) == 2
    env = read_report_file(reports[0])
    assert read_report_file(reports[1]).payload == env.payload
    result = verify_report(env)
    assert result.complete, result.describe()
    assert {role: status.value for role, status in result.roles.items()} == {
        "server": "valid",
        "root": "valid",
        "subordinate": "valid",
    }
    body = parse_report_body(env.payload)
    missing = {f.sha256 for f in body.findings if f.code == "missing-at-subordinate"}
    assert missing == BUG_1695993


def test_a_report_whose_body_the_client_holds_comes_as_its_signatures_alone(
    federation: Federation,
) -> None:
    """Issue 13: a fresh agent process holds the reports it wrote; the server answers those
    with their signatures, and the client puts the body back."""
    _run_both_agents(federation)
    written = read_report_file(sorted((federation.work / "reports").glob("*/*.report.json"))[0])
    rid = hashlib.sha256(written.payload).hexdigest()
    raw = federation.client("secom")
    try:  # the wire, under the client's own handling
        bare = raw.stub.GetReport(
            pb.GetReportRequest(pairing="secom-jprs", known=[rid]), timeout=10
        )
        whole = raw.stub.GetReport(pb.GetReportRequest(pairing="secom-jprs"), timeout=10)
    finally:
        raw.close()
    assert bare.report_id == whole.report_id == rid
    assert (bare.envelope.payload, whole.envelope.payload) == (b"", written.payload)
    assert list(bare.envelope.signatures) == list(whole.envelope.signatures)
    client = federation.client("secom")
    try:
        client.hold_report(written)
        served = client.report("secom-jprs")
    finally:
        client.close()
    assert served.envelope.payload == written.payload
    assert verify_report(Envelope.from_pb(served.envelope)).complete


def _refresh_every_cycle(config: Path) -> None:
    """snapshot_refresh_seconds = 0: the unchanged inventory is pushed again at once."""
    text = config.read_text()
    config.write_text(text.replace("[server]", "snapshot_refresh_seconds = 0\n\n[server]", 1))


def test_an_unchanged_inventory_is_not_pushed_again(federation: Federation) -> None:
    _run_both_agents(federation)
    outputs = _run_both_agents(federation)
    for party, out in zip(("secom", "jprs"), outputs, strict=True):
        assert f"{party}: secom-jprs unchanged since snapshot version 1 (expires " in out, out
        assert "pushed" not in out, out
    env = read_report_file(_latest_reports(federation)[-1])
    assert verify_report(env).complete


def test_a_second_concurrent_cycle_also_ends_fully_signed(federation: Federation) -> None:
    # Both push version 2 at once: the first report of the round names one side's version 1,
    # so each agent must go on to co-sign the report on both version-2 snapshots.
    _run_both_agents(federation)
    for party in ("secom", "jprs"):
        _refresh_every_cycle(federation.work / f"{party}.toml")
    outputs = _run_both_agents(federation)
    assert all("pushed secom-jprs snapshot version 2 (refresh" in out for out in outputs), outputs
    envs = [read_report_file(path) for path in _latest_reports(federation)]
    assert envs[0].payload == envs[1].payload
    body = parse_report_body(envs[0].payload)
    assert (body.root.version, body.subordinate.version) == (2, 2)
    assert verify_report(envs[0]).complete


def test_a_client_without_a_certificate_is_refused(federation: Federation) -> None:
    ca = (federation.work / "tls" / "ca.pem").read_bytes()
    channel = grpc.secure_channel(federation.address, grpc.ssl_channel_credentials(ca))
    stub = pb_grpc.ExchangeStub(channel)
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetReport(pb.GetReportRequest(pairing="secom-jprs"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()


def test_party_a_cannot_push_a_snapshot_of_party_b(federation: Federation) -> None:
    # jprs's own valid TLS certificate, jprs's key, but the header says secom.
    env = _signed(federation, "jprs", _snapshot_of(federation, "secom", ROOT))
    client = federation.client("jprs")
    with pytest.raises(TransportError, match=r"PERMISSION_DENIED: snapshot rejected"):
        client.push(env)
    client.close()
    assert _stored_snapshots(federation) == 0


def test_a_snapshot_signed_with_another_partys_key_is_refused(federation: Federation) -> None:
    env = _signed(federation, "secom", _snapshot_of(federation, "jprs", SUBORDINATE))
    client = federation.client("jprs")
    with pytest.raises(Refused, match=r"pinned for party 'secom', not for 'jprs'") as caught:
        client.push(env)
    client.close()
    assert rejection_rule(caught.value) == "untrusted-signer"
    assert caught.value.hint == UntrustedSignerError.hint
    assert _stored_snapshots(federation) == 0


def _rules(error: grpc.RpcError) -> list[object]:
    """The `invsync-rule` values of a failed call's trailing metadata."""
    return [m.value for m in error.trailing_metadata() if m.key == "invsync-rule"]


def test_a_rollback_reaches_the_client_as_its_rule_in_the_trailing_metadata(
    federation: Federation,
) -> None:
    first = _snapshot_of(federation, "jprs", SUBORDINATE)
    now = datetime.now(UTC)
    second = build_payload(
        party="jprs",
        pairing="secom-jprs",
        role=SUBORDINATE,
        version=2,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        records=[],
        previous_digest=hashlib.sha256(first).digest(),
    )
    older = build_payload(  # version 1 again, other bytes, after version 2
        party="jprs",
        pairing="secom-jprs",
        role=SUBORDINATE,
        version=1,
        issued_at=now - timedelta(minutes=1),
        expires_at=now + timedelta(hours=1),
        records=[],
    )
    client = federation.client("jprs")
    client.push(_signed(federation, "jprs", first))
    client.push(_signed(federation, "jprs", second))
    with pytest.raises(grpc.RpcError) as raw:
        client.stub.PushSnapshot(to_chunks(_signed(federation, "jprs", older)), timeout=10)
    with pytest.raises(Refused, match=r"FAILED_PRECONDITION: .*below the last accepted") as caught:
        client.push(_signed(federation, "jprs", older))
    client.close()
    assert raw.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _rules(raw.value) == ["rollback"]
    # The status text stays the human message; the rule is data beside it.
    assert raw.value.details() == (
        "snapshot rejected [rollback]: version 1 is below the last accepted version 2 "
        "of party 'jprs' in pairing 'secom-jprs'"
    )
    assert rejection_rule(caught.value) == "rollback"
    assert caught.value.hint == RollbackError.hint
    assert _stored_snapshots(federation) == 2


def test_nothing_to_fetch_yet_is_not_found_with_its_rule(federation: Federation) -> None:
    client = federation.client("jprs")
    with pytest.raises(NotFoundYet, match="pairing 'secom-jprs': no report yet") as caught:
        client.report("secom-jprs")
    client.close()
    assert rejection_rule(caught.value) == "not-found"


def test_an_accepted_snapshot_gets_a_receipt_and_an_identical_repush_is_a_no_op(
    federation: Federation,
) -> None:
    env = _signed(federation, "jprs", _snapshot_of(federation, "jprs", SUBORDINATE))
    client = federation.client("jprs")
    first = client.push(env)
    again = client.push(env)
    client.close()
    assert first == again
    receipt = decode_receipt(first)
    assert (receipt.party, receipt.pairing, receipt.version) == ("jprs", "secom-jprs", 1)
    assert receipt.payload_sha256 == hashlib.sha256(env.payload).digest()
    assert _stored_snapshots(federation) == 1


def test_the_health_service_reports_serving(federation: Federation) -> None:
    client = federation.client("jprs")
    stub = health_pb2_grpc.HealthStub(client.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service="invsync.v1.Exchange"), timeout=5)
    client.close()
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_the_server_refuses_to_start_without_a_client_ca(tmp_path: Path) -> None:
    from invsync.server.localfed import write_federation

    write_federation(tmp_path)
    config = tmp_path / "server.toml"
    config.write_text(config.read_text().replace('client_ca = "tls/ca.pem"\n', ""))
    proc = subprocess.run(
        command("server", "run", "--config", str(config)),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{config}: tls.client_ca: missing" in proc.stderr.decode()


def test_a_certificate_dropped_from_the_roots_log_is_disappeared_and_both_agents_agree(
    federation: Federation,
) -> None:
    _run_both_agents(federation)
    log = federation.work / "data" / "secom_issuance_log.jsonl"
    lines = log.read_text().splitlines()
    dropped = json.loads(lines[0])["certificate"]
    log.write_text("\n".join(lines[1:]) + "\n")
    _run_changed_then_peer(federation, changed="secom", peer="jprs")
    env = read_report_file(_latest_reports(federation)[-1])
    assert verify_report(env).complete
    body = parse_report_body(env.payload)
    found = {(f.code, f.sha256) for f in body.findings}
    sha = x509.load_pem_x509_certificate(dropped.encode()).fingerprint(hashes.SHA256()).hex()
    assert ("disappeared", sha.upper()) in found
    assert ("missing-at-root", sha.upper()) in found


def test_a_huge_header_party_is_refused_with_its_rule_not_stream_removed(
    federation: Federation,
) -> None:
    # Validly signed by jprs, but the header's party is 100,000 characters: the rejection quotes
    # it, and unbounded it would push the trailers past gRPC's metadata limit.
    env = _signed(federation, "jprs", _snapshot_of(federation, "x" * 100_000, SUBORDINATE))
    client = federation.client("jprs")
    with pytest.raises(grpc.RpcError) as raw:
        client.stub.PushSnapshot(to_chunks(env), timeout=10)
    client.close()
    assert raw.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _rules(raw.value) == ["party-mismatch"]
    details = raw.value.details() or ""
    assert details.startswith("snapshot rejected [party-mismatch]: header names party 'xxx")
    # The party is quoted bounded (200 characters and an ellipsis); the message goes on.
    assert details.endswith("x…' but the TLS identity is 'jprs'") and len(details) < 400
    assert _stored_snapshots(federation) == 0
