"""A local federation on loopback: its files, its server process and its agent processes.

Used by `invsync demo` and by the integration tests, so that both exercise the same real
processes over mutual TLS: a TLS CA, a server certificate, a client certificate and a signing
key per party, the SECOM/JPRS demo inventories, and the TOML configurations tying them together.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from invsync.agent.errors import InvsyncError
from invsync.agent.exchange.keys import generate, write_private_key
from invsync.agent.exchange.pki import make_federation

AS_OF = "2021-03-01T00:00:00Z"
STARTUP_SECONDS = 30.0
CYCLE_SECONDS = 120.0
PARTIES = {"secom": "root", "jprs": "subordinate"}


class FederationError(InvsyncError):
    hint = "Read the process logs under the federation's logs/ directory."


def write_federation(work: Path, as_of: str = AS_OF) -> None:
    data = work / "data"
    data.mkdir()
    for item in resources.files("invsync.agent.demo_data").iterdir():
        if item.name.endswith((".pem", ".jsonl", ".txt")):
            (data / item.name).write_bytes(item.read_bytes())
    make_federation(work / "tls", "localhost", list(PARTIES))
    keys = work / "keys"
    keys.mkdir()
    for name in ("server", *PARTIES):
        key = generate()
        write_private_key(keys / f"{name}.key", key)
        (keys / f"{name}.pub").write_bytes(key.public.public_pem())
    (work / "logs").mkdir()
    (work / "server.toml").write_text(_server_config(as_of))


def _server_config(as_of: str) -> str:
    return f"""# Exchange server of the demo federation.
[server]
name = "demo-exchange"
listen = "127.0.0.1:0"
database = "state/server.db"
signing_key = "keys/server.key"
# The demo replays early 2021: findings are evaluated as of this time.
report_as_of = "{as_of}"

[tls]
cert = "tls/server.crt"
key = "tls/server.key"
client_ca = "tls/ca.pem"

[parties.secom]
tls_identity = "secom"
signing_keys = ["keys/secom.pub"]

[parties.jprs]
tls_identity = "jprs"
signing_keys = ["keys/jprs.pub"]

[pairings.secom-jprs]
root = "secom"
subordinate = "jprs"
"""


def agent_config(party: str, port: int) -> str:
    peer = "jprs" if party == "secom" else "secom"
    sources = (
        '["issuance-log:data/secom_issuance_log.jsonl"]'
        if party == "secom"
        else '["data/jprs_ca_certificates.pem"]'
    )
    organizations = (
        'subject_organizations = ["Japan Registry Services Co., Ltd."]\n'
        if party == "secom"
        else ""
    )
    return f"""# Agent of {party} in the demo federation.
[agent]
party = "{party}"
database = "state/{party}.db"
signing_key = "keys/{party}.key"
sources = {sources}
report_dir = "reports/{party}"

[server]
address = "127.0.0.1:{port}"
ca = "tls/ca.pem"
cert = "tls/{party}.crt"
key = "tls/{party}.key"
signing_keys = ["keys/server.pub"]
name = "demo-exchange"          # the server's name: its log's origin and checkpoint key name

[peers.{peer}]
signing_keys = ["keys/{peer}.pub"]

[pairings.secom-jprs]
role = "{PARTIES[party]}"
peer = "{peer}"
issuer_certificates = ["data/secom_roots.pem"]
{organizations}{_inventory_sections(party)}"""


def _inventory_sections(party: str) -> str:
    """JPRS declares its profile and its audit's scope list; SECOM has neither to declare."""
    if party != "jprs":
        return ""
    return """
[[audit_scope]]
source = "data/jprs_audit_scope_webtrust_br_2020.txt"
kind = "WebTrust BR"
period_start = 2019-10-30
period_end = 2020-10-29

[profiles.jprs]
serial_bytes = 16
# JPRS's first CA certificates with 16-byte serials are of 2019-07-11; those of 2016 and 2018
# have 9-byte serials, issued before the profile applied.
effective_from = 2019-07-01T00:00:00Z
"""


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "invsync.server.cli", *args]


@contextmanager
def server_process(work: Path) -> Iterator[int]:
    """The server of `work` (its server.toml), running: the port it listens on."""
    with running_server(work) as (_, port):
        yield port


@contextmanager
def running_server(work: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The server of `work` running, and its port once it listens; its stderr in
    logs/server.log. Stopped (SIGTERM, then SIGKILL) on the way out."""
    with (work / "logs" / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            command("server", "run", "--config", str(work / "server.toml")),
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            yield proc, _await_port(proc, work)
        finally:
            stop(proc)


def _await_port(proc: subprocess.Popen[bytes], work: Path) -> int:
    """The server prints its port once listening; wait for that line, not a fixed sleep."""
    found: list[int] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if b" listening on " in line:
                found.append(int(line.rsplit(b":", 1)[1]))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(STARTUP_SECONDS)
    if not found:
        raise FederationError(f"the server did not start; see {work / 'logs' / 'server.log'}")
    return found[0]


def run_agents(work: Path) -> None:
    procs = {}
    for party in PARTIES:
        log = (work / "logs" / f"{party}.log").open("wb")
        config = str(work / f"{party}.toml")
        procs[party] = (
            subprocess.Popen(
                command("agent", "run", "--config", config, "--once"),
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
        )
    try:
        for party, (proc, log) in procs.items():
            try:
                code = proc.wait(CYCLE_SECONDS)
            except subprocess.TimeoutExpired as e:
                raise FederationError(
                    f"agent {party} did not finish its cycle in {CYCLE_SECONDS:.0f} s; "
                    f"see {work / 'logs' / (party + '.log')}"
                ) from e
            log.close()
            if code not in (0, 1):  # 1: the reports hold error findings (the demo's do)
                raise FederationError(
                    f"agent {party} exited {code}; see {work / 'logs' / (party + '.log')}"
                )
    finally:
        for proc, _ in procs.values():
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
