"""A federation of any number of parties and pairings, as real processes on loopback.

`write_federation` (server/localfed.py) writes the two-party demo; the scenarios of issue 14,
item 4 need a root with three subordinates and a subordinate with two roots. The files are made
the same way (a TLS CA and a client certificate per party, a signing key per party and for the
server), the server is `invsync server run` and the agents `invsync agent run --once`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.endpoint import ServerEndpoint
from invsync.agent.exchange.keys import generate, write_private_key
from invsync.agent.exchange.pki import make_federation
from invsync.agent.report.body import ReportBody, parse_report_body
from invsync.server.localfed import command

AS_OF = "2025-06-01T00:00:00Z"
EXIT_OK, EXIT_FINDINGS = 0, 1


@dataclass(frozen=True)
class Pairing:
    name: str
    root: str
    subordinate: str
    issuer_certificates: str  # the root's CA certificates, a PEM file under data/
    subject_organizations: tuple[str, ...] = ()


@dataclass(frozen=True)
class Party:
    name: str
    sources: tuple[str, ...]  # under data/, with a KIND: prefix where needed
    pairings: Sequence[Pairing] = field(default=())


def write_files(work: Path, parties: Sequence[Party], pairings: Sequence[Pairing]) -> None:
    """TLS files, signing keys and server.toml; data/ and logs/ made, empty."""
    (work / "data").mkdir()
    (work / "logs").mkdir()
    make_federation(work / "tls", "localhost", [p.name for p in parties])
    keys = work / "keys"
    keys.mkdir()
    for name in ("server", *(p.name for p in parties)):
        key = generate()
        write_private_key(keys / f"{name}.key", key)
        (keys / f"{name}.pub").write_bytes(key.public.public_pem())
    (work / "server.toml").write_text(server_config(parties, pairings))


def server_config(parties: Sequence[Party], pairings: Sequence[Pairing]) -> str:
    text = f"""[server]
name = "test-exchange"
listen = "127.0.0.1:0"
database = "state/server.db"
signing_key = "keys/server.key"
report_as_of = "{AS_OF}"

[tls]
cert = "tls/server.crt"
key = "tls/server.key"
client_ca = "tls/ca.pem"
"""
    for party in parties:
        text += f"""
[parties.{party.name}]
tls_identity = "{party.name}"
signing_keys = ["keys/{party.name}.pub"]
"""
    for pairing in pairings:
        text += f"""
[pairings.{pairing.name}]
root = "{pairing.root}"
subordinate = "{pairing.subordinate}"
"""
    return text


def agent_config(party: Party, port: int) -> str:
    sources = ", ".join(f'"{_data(s)}"' for s in party.sources)
    text = f"""[agent]
party = "{party.name}"
database = "state/{party.name}.db"
signing_key = "keys/{party.name}.key"
sources = [{sources}]
report_dir = "reports/{party.name}"

[server]
address = "127.0.0.1:{port}"
ca = "tls/ca.pem"
cert = "tls/{party.name}.crt"
key = "tls/{party.name}.key"
signing_keys = ["keys/server.pub"]
name = "test-exchange"
"""
    peers = {_peer(party.name, p) for p in party.pairings}
    for peer in sorted(peers):
        text += f'\n[peers.{peer}]\nsigning_keys = ["keys/{peer}.pub"]\n'
    for pairing in party.pairings:
        role = "root" if pairing.root == party.name else "subordinate"
        text += f"""
[pairings.{pairing.name}]
role = "{role}"
peer = "{_peer(party.name, pairing)}"
issuer_certificates = ["data/{pairing.issuer_certificates}"]
"""
        if role == "root" and pairing.subject_organizations:
            organizations = ", ".join(f'"{o}"' for o in pairing.subject_organizations)
            text += f"subject_organizations = [{organizations}]\n"
    return text


def _data(source: str) -> str:
    kind, sep, path = source.partition(":")
    return f"{kind}:data/{path}" if sep else f"data/{source}"


def _peer(party: str, pairing: Pairing) -> str:
    return pairing.subordinate if pairing.root == party else pairing.root


def write_agents(work: Path, parties: Sequence[Party], port: int) -> None:
    for party in parties:
        (work / f"{party.name}.toml").write_text(agent_config(party, port))


def run_once(
    work: Path, names: Sequence[str], *, after: Mapping[str, str] = {}, wait: int = 30
) -> dict[str, str]:
    """`agent run --once` of each named party, in this order; their outputs. Each must end with
    every report complete (exit 0, or 1 for error findings). `after`: a party started only once
    this line is in the output of a party started before it ("sub: pushed root1-sub"), so
    that it settles on the report on that new snapshot, not on the last one before it."""
    outs = {name: work / "logs" / f"{name}.once" for name in names}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name in names:
        if name in after:
            _await_line(after[name], outs, procs)
        with outs[name].open("wb") as out:
            procs[name] = subprocess.Popen(
                command(
                    "agent", "run", "--config", str(work / f"{name}.toml"), "--once",
                    "--wait", str(wait),
                ),
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
    for proc in procs.values():
        proc.wait(120)
    outputs = {name: out.read_text() for name, out in outs.items()}
    codes = {name: proc.returncode for name, proc in procs.items()}
    assert set(codes.values()) <= {EXIT_OK, EXIT_FINDINGS}, outputs
    for output in outputs.values():
        assert "is not signed by every party" not in output, output
    return outputs


def _await_line(
    line: str,
    outs: Mapping[str, Path],
    procs: Mapping[str, subprocess.Popen[bytes]],
    seconds: float = 60,
) -> None:
    party = line.split(":", 1)[0]
    deadline = time.monotonic() + seconds
    while line not in outs[party].read_text():
        assert time.monotonic() < deadline and procs[party].poll() is None, outs[party].read_text()
        time.sleep(0.05)


def client(work: Path, party: str, port: int) -> ExchangeClient:
    tls = work / "tls"
    endpoint = ServerEndpoint(
        address=f"127.0.0.1:{port}",
        ca=tls / "ca.pem",
        cert=tls / f"{party}.crt",
        key=tls / f"{party}.key",
        signing_keys=(work / "keys" / "server.pub",),
    )
    return ExchangeClient(endpoint, timeout=10)


def latest_reports(
    work: Path, party: str, port: int, pairings: Sequence[str]
) -> Mapping[str, tuple[bytes, ReportBody]]:
    """The server's latest report of each pairing, as `party` fetches it: (body bytes, body)."""
    fetcher = client(work, party, port)
    try:
        found = {}
        for pairing in pairings:
            payload = fetcher.report(pairing).envelope.payload
            found[pairing] = (payload, parse_report_body(payload))
        return found
    finally:
        fetcher.close()
