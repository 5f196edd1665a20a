"""The full cycle at scale: N CA certificates through a real exchange server and two agents.

    .venv/bin/python benchmarks/pairing.py [--n 1000] [--changes 0.001] [--cycles 3]
        [--workdir DIR] [--keep] [--direct]

Issue 13, item 1. Generates a root CA and N synthetic P-256 subordinate CA certificates issued
by it (cached under DIR/cache, so a second run reuses them), attributed to the subordinate by
their subject organization. Then, in a fresh federation under DIR/run-* (the demo's TLS files
and keys, `localfed.write_federation`), it starts the real exchange server and runs both agents as
separate `invsync agent run --once` processes over mutual TLS on loopback, with the default
configuration apart from paths and ports. Each party's source is a PEM bundle the benchmark
writes: SECOM lists certificates [0, n + s*k), JPRS [s*k, n + s*k) after s steady cycles of k
changes (k = --changes * n): each steady cycle adds k new certificates to both lists and drops
k old ones from JPRS's only, so the report must hold s*k `missing-at-subordinate` and k
`disappeared` findings.

Prints one JSON object per cycle (cold, then --cycles steady ones) on its own line; what each
key means is in benchmarks/README.md. A findings count other than the expected one is printed,
never raised: it is a finding of the benchmark. Bytes are counted by a TCP relay per party
between that party's agent and the server (exact TLS bytes on the wire; `--direct` connects the
agents to the server itself and counts none).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from invsync.agent.report.body import ReportBody, parse_report_body, read_report_file, report_id
from invsync.server.localfed import command, running_server, stop, write_federation

if __package__ in (None, ""):  # run as a script: the project root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.peak import peak_command, read_peak_mib

ROOT_ORG = "Synthetic Root Operator"
SUB_ORG = "Synthetic Subordinate Co., Ltd."
SUBJECT_KEYS = 16  # the subordinate CAs share these keys: subjects and serials still differ
PAIRING = "secom-jprs"
ROLES = {"secom": "root", "jprs": "subordinate"}
# --max-bytes: the server's push budget, in largest snapshots (the default's 1 GiB / 256 MiB).
INFLIGHT_SHARE = 4
CYCLE_SECONDS = 3600.0  # generous for a large n, yet a hung agent still ends the run
PEM_END = "-----END CERTIFICATE-----\n"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RPC_HISTOGRAM = "invsync_rpc_duration_seconds"
PEM = serialization.Encoding.PEM


class BenchError(Exception):
    """The benchmark cannot go on (a process failed or hung); the message says where to look."""


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="invsync-pairing-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {workdir}", file=sys.stderr)
    run = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    failed = True  # a failed run keeps its files: the error names the log to read
    try:
        for line in benchmark(workdir / "cache", run, args):
            print(json.dumps(line), flush=True)
        failed = False
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        _clean(workdir if args.workdir is None else run, args.keep or failed)
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="certificates in both lists")
    parser.add_argument(
        "--changes", type=float, default=0.001, help="fraction of n changed per steady cycle"
    )
    parser.add_argument("--cycles", type=int, default=3, help="steady cycles after the cold one")
    parser.add_argument(
        "--workdir", type=Path, help="keeps the certificate cache (default: a new temp directory)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the federation's files")
    parser.add_argument(
        "--direct", action="store_true", help="no byte-counting relay: agents dial the server"
    )
    parser.add_argument(
        "--max-bytes",
        type=int,
        metavar="BYTES",
        help="raise the size limits (the agents' max_source_bytes and max_snapshot_bytes, the "
        "server's max_snapshot_bytes) to BYTES, and the server's max_inflight_bytes to 4 x BYTES "
        "(the default's four largest pushes at once); default: the default configuration's "
        "256 MiB and 1 GiB, which a source or full snapshot of more than about 350,000 "
        "certificates exceeds",
    )
    parser.add_argument(
        "--rpc-timeout",
        type=int,
        metavar="SECONDS",
        help="the agents' rpc_timeout_seconds (default: the default configuration's 10 s, "
        "which a push at 1,000,000 certificates can exceed while the server applies it)",
    )
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="agents as daemons (a cycle at start, one per SIGHUP) instead of --once processes",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.cycles < 0 or not 0 <= args.changes <= 1:
        parser.error("--n must be at least 1, --cycles at least 0, --changes within [0, 1]")
    if args.max_bytes is not None and args.max_bytes < 1:
        parser.error("--max-bytes must be at least 1")
    if args.rpc_timeout is not None and args.rpc_timeout < 1:
        parser.error("--rpc-timeout must be at least 1")
    if args.cycles * per_cycle(args.n, args.changes) > args.n:
        parser.error("--cycles * --changes * --n exceeds --n: nothing left to drop")
    return args


def _clean(path: Path, keep: bool) -> None:
    if keep:
        print(f"kept: {path}", file=sys.stderr)
    else:
        shutil.rmtree(path, ignore_errors=True)


# The scenario: which certificates each party lists, and what the report must say about it.


def per_cycle(n: int, changes: float) -> int:
    """Certificates changed per steady cycle: at least one whenever changes are asked for."""
    return 0 if changes <= 0 else max(1, round(n * changes))


def listed(party: str, n: int, k: int, steady: int) -> range:
    """Pool indices `party` lists after `steady` steady cycles: both gained s*k new ones, JPRS
    dropped its s*k oldest (SECOM, the root, never forgets what it issued)."""
    return range(steady * k if party == "jprs" else 0, n + steady * k)


def expected_findings(k: int, steady: int) -> dict[str, int]:
    """Every dropped certificate is live, so it stays `missing-at-subordinate`; only this
    cycle's k were in JPRS's previous snapshot, so only they are `disappeared`."""
    return expected_for_versions(k, steady + 1, steady + 1) or {}


def expected_for_versions(k: int, secom: int, jprs: int) -> dict[str, int] | None:
    """What a report comparing SECOM's snapshot `secom` with JPRS's `jprs` must hold, when the
    two are not of one cycle (a party's push of the cycle came after the other's report): each
    version v lists what `listed` gives after v - 1 steady cycles. SECOM's a steady cycles'
    list holds JPRS's b oldest dropped ones and, when a > b, (a - b) k newer ones JPRS does not
    list yet: all `missing-at-subordinate`. None when JPRS is ahead (not worked out here)."""
    a, b = secom - 1, jprs - 1
    if a < b or b < 0:  # JPRS ahead, or not pushed yet
        return None
    found = {"disappeared": k if b else 0, "missing-at-subordinate": a * k}
    return {code: count for code, count in sorted(found.items()) if count}


# The certificate pool: one root, then subordinate CA certificate i at index i, cached.


@dataclass(frozen=True)
class Pool:
    root_pem: bytes
    certs: list[str]  # PEM blocks


def load_pool(cache: Path, count: int) -> Pool:
    """The root and `count` subordinate CA certificates, generating only what the cache lacks."""
    cache.mkdir(parents=True, exist_ok=True)
    root_key = _cached_key(cache / "root.key")
    root = _cached_root(cache / "root.pem", root_key)
    path = cache / "certs.pem"
    certs = _blocks(path)
    if len(certs) < count:
        started = time.monotonic()
        keys = [_cached_key(cache / f"subject-{i}.key") for i in range(SUBJECT_KEYS)]
        new = [
            _subordinate(i, root, root_key, keys[i % SUBJECT_KEYS])
            for i in range(len(certs), count)
        ]
        certs += new
        _write_atomically(path, "".join(certs))
        print(
            f"generated {len(new)} certificates in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
        )
    return Pool(root.public_bytes(PEM), certs[:count])


def _blocks(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [block + PEM_END for block in path.read_text().split(PEM_END) if block.strip()]


def _cached_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_atomically(path, pem.decode())
    return key


def _cached_root(path: Path, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    if path.exists():
        return x509.load_pem_x509_certificate(path.read_bytes())
    name = _name("Synthetic Root CA", ROOT_ORG)
    now = datetime.now(UTC)
    cert = (
        _ca_builder(name, name, key.public_key(), key.public_key(), path_length=None)
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=20 * 365))
        .sign(key, hashes.SHA256())
    )
    _write_atomically(path, cert.public_bytes(PEM).decode())
    return cert


def _subordinate(
    index: int,
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
    key: ec.EllipticCurvePrivateKey,
) -> str:
    """Certificate `index`: its own subject and serial, so no two are doppelgangers."""
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    subject = _name(f"Synthetic Subordinate CA {index:07d}", SUB_ORG)
    cert = (
        _ca_builder(subject, root.subject, key.public_key(), root_key.public_key(), path_length=0)
        .serial_number((1 << 126) | index)  # 16 bytes, positive, distinct
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=5 * 365))
        .sign(root_key, hashes.SHA256())
    )
    return cert.public_bytes(PEM).decode()


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    issuer_public: ec.EllipticCurvePublicKey,
    path_length: int | None,
) -> x509.CertificateBuilder:
    usage = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
    )


def _write_atomically(path: Path, text: str) -> None:
    """A reader (an agent, a second benchmark run) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# The federation: the demo's TLS files and keys, our sources, default configuration otherwise.


def write_bench_federation(
    run: Path, pool: Pool, metrics_port: int, max_bytes: int | None = None
) -> None:
    write_federation(run)
    toml = run / "server.toml"
    # The demo pins its clock to early 2021; the benchmark's certificates are valid now.
    lines = [
        line
        for line in toml.read_text().splitlines(keepends=True)
        if not line.startswith(("report_as_of", "# The demo replays"))
    ]
    raised = ""
    if max_bytes is not None:
        budget = INFLIGHT_SHARE * max_bytes
        raised = f"max_snapshot_bytes = {max_bytes}\nmax_inflight_bytes = {budget}\n"
    text = "".join(lines).replace(
        "[server]\n", f'[server]\nmetrics_listen = "127.0.0.1:{metrics_port}"\n{raised}', 1
    )
    toml.write_text(text)
    (run / "bench").mkdir()
    (run / "bench" / "root.pem").write_bytes(pool.root_pem)


def agent_toml(
    party: str, port: int, max_bytes: int | None = None, rpc_timeout: int | None = None
) -> str:
    """localfed's agent configuration with our sources and root, without the demo's audit
    list and profile; SECOM attributes the certificates to JPRS by subject organization.
    `max_bytes`: the size limits raised to it; `rpc_timeout`: the calls' (None: the defaults)."""
    peer = "jprs" if party == "secom" else "secom"
    root_only = (
        f'subject_organizations = ["{SUB_ORG}"]\n\n'
        f'[[attribution.rules]]\noperator = "jprs"\nsubject_organizations = ["{SUB_ORG}"]\n'
        if party == "secom"
        else ""
    )
    return f"""# Agent of {party} in the pairing benchmark.
[agent]
party = "{party}"
database = "state/{party}.db"
signing_key = "keys/{party}.key"
sources = ["bench/{party}.pem"]
report_dir = "reports/{party}"
{_raised_limits(max_bytes)}{_rpc_timeout(rpc_timeout)}
[server]
address = "127.0.0.1:{port}"
ca = "tls/ca.pem"
cert = "tls/{party}.crt"
key = "tls/{party}.key"
signing_keys = ["keys/server.pub"]
name = "demo-exchange"

[peers.{peer}]
signing_keys = ["keys/{peer}.pub"]

[pairings.{PAIRING}]
role = "{ROLES[party]}"
peer = "{peer}"
issuer_certificates = ["bench/root.pem"]
{root_only}"""


def _raised_limits(max_bytes: int | None) -> str:
    if max_bytes is None:
        return ""
    return f"max_source_bytes = {max_bytes}\nmax_snapshot_bytes = {max_bytes}\n"


def _rpc_timeout(seconds: int | None) -> str:
    return "" if seconds is None else f"rpc_timeout_seconds = {seconds}\n"


def write_sources(run: Path, pool: Pool, n: int, k: int, steady: int) -> dict[str, int]:
    """Both parties' PEM bundles for this cycle; how many certificates each lists."""
    counts = {}
    for party in ROLES:
        indices = listed(party, n, k, steady)
        _write_atomically(run / "bench" / f"{party}.pem", "".join(pool.certs[i] for i in indices))
        counts[party] = len(indices)
    return counts


@contextmanager
def exchange_server(run: Path) -> Iterator[tuple[int, int]]:
    """The server process for the whole run: its pid and port."""
    with running_server(run) as (proc, port):
        yield proc.pid, port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Bytes on the wire: a relay per party, so each byte is attributed to its side exactly.


class Relay:
    """A loopback TCP relay to the server counting the bytes each way (TLS records: gRPC,
    HTTP/2 and TLS framing and handshakes included)."""

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.up = 0  # agent -> server
        self.down = 0  # server -> agent
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def counts(self) -> tuple[int, int, int]:
        with self._lock:
            return self.up, self.down, self.connections

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._connection, args=(client, upstream), daemon=True).start()

    def _connection(self, client: socket.socket, upstream: socket.socket) -> None:
        """Both directions until both ended; a half-close is passed on, never cut short."""
        down = threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True)
        down.start()
        self._pump(client, upstream, True)
        down.join()
        client.close()
        upstream.close()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
        with suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


# One cycle's processes and their resource usage.


@dataclass(frozen=True)
class AgentRun:
    code: int | None  # a --once agent's exit status; None for a daemon, which lives on
    seconds: float  # from the start of the cycle to this agent's exit
    cpu_s: float
    peak_rss_mib: float | None  # None: the agent wrote no peak (killed)


def run_agents(run: Path, label: str) -> dict[str, AgentRun]:
    """Both agents' `--once` cycles at once, reaped with wait4 for their resource usage."""
    started = time.monotonic()
    procs = {party: _spawn(run, party, label) for party in ROLES}
    results: dict[str, AgentRun] = {}
    threads = {
        party: threading.Thread(
            target=_reap,
            args=(proc, started, results, party, _peak_file(run, party, label)),
            daemon=True,
        )
        for party, proc in procs.items()
    }
    for thread in threads.values():
        thread.start()
    for party, thread in threads.items():
        thread.join(max(0.0, started + CYCLE_SECONDS - time.monotonic()))
        if thread.is_alive():
            for proc in procs.values():
                if proc.returncode is None:
                    proc.kill()  # not reaped yet: the pid is still ours
            raise BenchError(f"agent {party} hung; see {run / 'logs' / f'{party}-{label}.log'}")
    return results


# --daemon: both agents started once, each cycle after the first run on SIGHUP.

CYCLE_ENDED = b": cycle ended after "  # the daemon's line once a cycle is over, collection too
CYCLE_FAILED = b"cycle failed: "  # logged by a daemon whose cycle failed (agent.cli.agent)


@dataclass
class Daemons:
    """The agents' daemon processes, once started (at the cold cycle)."""

    run: Path
    procs: dict[str, subprocess.Popen[bytes]]

    def log(self, party: str) -> Path:
        return self.run / "logs" / f"{party}-daemon.log"


@contextmanager
def agent_daemons(run: Path) -> Iterator[Daemons]:
    daemons = Daemons(run, {})
    try:
        yield daemons
    finally:
        for proc in daemons.procs.values():
            stop(proc)


def run_daemons(daemons: Daemons, steady: int) -> dict[str, AgentRun]:
    """One cycle of both daemons: started for the cold cycle, sent SIGHUP for a steady one.
    CPU and peak resident set are the cycle's, from /proc (the peak reset as it starts)."""
    started = time.monotonic()
    cpu_before = {}
    for party in ROLES:
        if steady == 0:
            daemons.procs[party] = _spawn_daemon(daemons, party)
            cpu_before[party] = 0.0  # the cold cycle counts the process's start, as with --once
        else:
            proc = daemons.procs[party]
            reset_peak_rss(proc.pid)
            cpu_before[party] = process_cpu_s(proc.pid)
            proc.send_signal(signal.SIGHUP)
    results: dict[str, AgentRun] = {}
    while len(results) < len(ROLES):
        for party, proc in daemons.procs.items():
            if party not in results and _cycles_ended(daemons, party, proc) > steady:
                results[party] = AgentRun(
                    code=None,
                    seconds=time.monotonic() - started,
                    cpu_s=process_cpu_s(proc.pid) - cpu_before[party],
                    peak_rss_mib=peak_rss_mib(proc.pid),
                )
        if time.monotonic() > started + CYCLE_SECONDS:
            raise BenchError(f"a daemon hung; see {daemons.log('secom')}, {daemons.log('jprs')}")
        time.sleep(0.05)
    return results


def _spawn_daemon(daemons: Daemons, party: str) -> subprocess.Popen[bytes]:
    config = str(daemons.run / f"{party}.toml")
    with daemons.log(party).open("wb") as log:
        return subprocess.Popen(
            command("agent", "run", "--config", config),
            cwd=daemons.run,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )


def _cycles_ended(daemons: Daemons, party: str, proc: subprocess.Popen[bytes]) -> int:
    """Cycles the daemon ended; a BenchError once it exited or logged a failed cycle (which it
    survives, ending the cycle all the same: its figures would not be a cycle's)."""
    if proc.poll() is not None:
        raise BenchError(f"daemon {party} exited with {proc.returncode}; see {daemons.log(party)}")
    log = daemons.log(party).read_bytes()
    if CYCLE_FAILED in log:
        raise BenchError(f"daemon {party} logged a failed cycle; see {daemons.log(party)}")
    return log.count(CYCLE_ENDED)


def _peak_file(run: Path, party: str, label: str) -> Path:
    return run / "logs" / f"{party}-{label}.peak"


def _spawn(run: Path, party: str, label: str) -> subprocess.Popen[bytes]:
    config = str(run / f"{party}.toml")
    peak_file = _peak_file(run, party, label)
    peak_file.unlink(missing_ok=True)
    with (run / "logs" / f"{party}-{label}.log").open("wb") as log:
        return subprocess.Popen(
            peak_command(peak_file, "agent", "run", "--config", config, "--once"),
            cwd=run,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _reap(
    proc: subprocess.Popen[bytes],
    started: float,
    results: dict[str, AgentRun],
    party: str,
    peak_file: Path,
) -> None:
    # The peak comes from the agent itself (benchmarks/peak.py): wait4's ru_maxrss would hold
    # this process's resident set, certificate pool included, carried over at fork.
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    results[party] = AgentRun(
        code=proc.returncode,
        seconds=time.monotonic() - started,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=read_peak_mib(peak_file),
    )


def _mib(peak: float | None) -> float | None:
    return None if peak is None else round(peak, 1)


def process_cpu_s(pid: int) -> float:
    """utime + stime of a running process, every thread, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+), so the peak is this cycle's alone."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"/proc/{pid}/status has no VmHWM")


class SwapWatch:
    """The most each process had swapped out during a cycle (VmSwap, sampled every 0.25 s):
    a resident set is a footprint only while nothing is swapped, so a machine with swap says
    how much of each process was not resident. None for a process not sampled (--once)."""

    def __init__(self, server_pid: int, daemons: Daemons | None) -> None:
        self._server_pid = server_pid
        self._daemons = daemons
        self._most: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> SwapWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _pids(self) -> dict[str, int]:
        # The daemons are started within the cold cycle: read them as they come.
        agents = self._daemons.procs if self._daemons else {}
        return {"server": self._server_pid} | {party: p.pid for party, p in list(agents.items())}

    def _watch(self) -> None:
        while True:
            for who, pid in self._pids().items():
                kib = _status_kib(pid, "VmSwap:")
                if kib is not None:
                    self._most[who] = max(kib, self._most.get(who, 0))
            if self._done.wait(0.25):
                return

    def peaks(self) -> dict[str, object]:
        total = _status_kib(None, "SwapTotal:")
        peaks: dict[str, object] = {"swap_total_mib": _mib(total / 1024 if total else 0.0)}
        for who in ("server", *ROLES):
            most = self._most.get(who)
            peaks[f"peak_swap_mib_{who}"] = None if most is None else _mib(most / 1024)
        return peaks


def _status_kib(pid: int | None, field: str) -> int | None:
    """A kB field of /proc/PID/status (or of /proc/meminfo for None); None if unreadable."""
    path = Path("/proc/meminfo") if pid is None else Path(f"/proc/{pid}/status")
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith(field)), None)


def server_rpcs(metrics_port: int) -> dict[str, tuple[float, float]]:
    """The server's calls so far by method: (count, seconds), from its /metrics endpoint."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    calls: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != RPC_HISTOGRAM:
            continue
        for sample in family.samples:
            count, seconds = calls.get(sample.labels["method"], (0.0, 0.0))
            if sample.name == f"{RPC_HISTOGRAM}_count":
                count = sample.value
            elif sample.name == f"{RPC_HISTOGRAM}_sum":
                seconds = sample.value
            calls[sample.labels["method"]] = (count, seconds)
    return calls


# The report both agents wrote, and the findings it holds.


@dataclass(frozen=True)
class Written:
    report_id: str
    body: ReportBody


def latest_report(directory: Path) -> Written:
    paths = sorted(directory.glob("*.report.json"), key=lambda p: p.stat().st_mtime)
    if not paths:
        raise BenchError(f"no report in {directory}")
    payload = read_report_file(paths[-1]).payload
    return Written(report_id(payload), parse_report_body(payload))


# The cycle, measured.


@dataclass(frozen=True)
class Bench:
    run: Path
    pool: Pool
    n: int
    changes: float
    k: int
    server_pid: int
    metrics_port: int
    relays: dict[str, Relay]
    daemons: Daemons | None  # --daemon: the agents' daemons; None: --once processes
    max_bytes: int | None = None  # --max-bytes; None: the default configuration's limits
    rpc_timeout: int | None = None  # --rpc-timeout; None: the default configuration's


def measure_cycle(bench: Bench, steady: int) -> dict[str, object]:
    label = f"cycle{steady}"
    listed_counts = write_sources(bench.run, bench.pool, bench.n, bench.k, steady)
    rpcs_before = server_rpcs(bench.metrics_port)
    relays_before = {party: relay.counts() for party, relay in bench.relays.items()}
    hwm_reset = reset_peak_rss(bench.server_pid)
    server_cpu_before = process_cpu_s(bench.server_pid)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    with SwapWatch(bench.server_pid, bench.daemons) as swap:
        agents = (
            run_daemons(bench.daemons, steady) if bench.daemons else run_agents(bench.run, label)
        )
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = process_cpu_s(bench.server_pid) - server_cpu_before
    rpcs = _rpc_deltas(rpcs_before, server_rpcs(bench.metrics_port))
    reports = {party: latest_report(bench.run / "reports" / party) for party in ROLES}
    expected = expected_findings(bench.k, steady)
    body = reports["secom"].body
    versions = (body.root.version, body.subordinate.version)
    measured = dict(sorted(Counter(f.code for f in reports["secom"].body.findings).items()))
    line: dict[str, object] = {
        "cycle": "steady" if steady else "cold",
        "index": steady,
        "n": bench.n,
        "changes": bench.changes,
        "max_bytes": bench.max_bytes,
        "rpc_timeout_s": bench.rpc_timeout,
        "agents": "daemon" if bench.daemons else "once",
        "changed_certificates": bench.k if steady else 0,
        "listed_secom": listed_counts["secom"],
        "listed_jprs": listed_counts["jprs"],
        "wall_s": round(max(a.seconds for a in agents.values()), 3),
        "secom_s": round(agents["secom"].seconds, 3),
        "jprs_s": round(agents["jprs"].seconds, 3),
        "cpu_s_server": round(server_cpu, 2),
        "cpu_s_secom": round(agents["secom"].cpu_s, 2),
        "cpu_s_jprs": round(agents["jprs"].cpu_s, 2),
        "cpu_s_bench": round(_cpu(own_after) - _cpu(own_before), 2),
        "peak_rss_mib_server": round(peak_rss_mib(bench.server_pid), 1),
        "server_peak_is_cycle_peak": hwm_reset,
        "peak_rss_mib_secom": _mib(agents["secom"].peak_rss_mib),
        "peak_rss_mib_jprs": _mib(agents["jprs"].peak_rss_mib),
        **swap.peaks(),
        **_wire(bench.relays, relays_before),
        "rpcs_both_sides": {method: int(count) for method, (count, _) in rpcs.items()},
        "rpcs_both_sides_total": int(sum(count for count, _ in rpcs.values())),
        "server_rpc_s_both_sides": {m: round(s, 3) for m, (_, s) in rpcs.items()},
        "exit_secom": agents["secom"].code,
        "exit_jprs": agents["jprs"].code,
        "report_versions": {"secom": versions[0], "jprs": versions[1]},
        "reports_agree": reports["secom"].report_id == reports["jprs"].report_id,
        "findings_measured": sum(measured.values()),
        "findings_expected": sum(expected.values()),
        "findings_match": measured == expected,
        "findings_match_versions": measured == expected_for_versions(bench.k, *versions),
        "findings_measured_by_code": measured,
        "findings_expected_by_code": expected,
    }
    _say(line)
    return line


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _rpc_deltas(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, tuple[float, float]]:
    deltas = {}
    for method in sorted(after):
        count, seconds = before.get(method, (0.0, 0.0))
        if after[method][0] > count:
            deltas[method] = (after[method][0] - count, after[method][1] - seconds)
    return deltas


def _wire(
    relays: dict[str, Relay], before: dict[str, tuple[int, int, int]]
) -> dict[str, int | None]:
    """Bytes and TCP connections of the cycle per side; None without relays (--direct)."""
    wire: dict[str, int | None] = {}
    for party in ROLES:
        relay = relays.get(party)
        now = relay.counts() if relay else None
        was = before.get(party, (0, 0, 0))
        wire[f"wire_bytes_{party}_to_server"] = now[0] - was[0] if now else None
        wire[f"wire_bytes_server_to_{party}"] = now[1] - was[1] if now else None
        wire[f"tcp_connections_{party}"] = now[2] - was[2] if now else None
    return wire


def _say(line: dict[str, object]) -> None:
    """A human line on stderr; a findings mismatch is shown, never raised."""
    verdict = "as expected" if line["findings_match"] else "MISMATCH"
    if not line["findings_match"] and line["findings_match_versions"]:
        versions = line["report_versions"]
        assert isinstance(versions, dict)
        verdict += (
            f": the report compares SECOM version {versions['secom']} with JPRS version "
            f"{versions['jprs']}, and holds what those imply"
        )
    print(
        f"{line['cycle']} {line['index']}: {line['wall_s']} s, findings measured "
        f"{line['findings_measured']}, expected {line['findings_expected']} ({verdict})",
        file=sys.stderr,
    )


def benchmark(cache: Path, run: Path, args: argparse.Namespace) -> Iterator[dict[str, object]]:
    """The cold cycle, then `args.cycles` steady ones, in a fresh federation under `run`."""
    k = per_cycle(args.n, args.changes)
    pool = load_pool(cache, args.n + args.cycles * k)
    metrics_port = free_port()
    write_bench_federation(run, pool, metrics_port, args.max_bytes)
    with exchange_server(run) as (pid, port), agent_daemons(run) as daemons:
        relays = {} if args.direct else {party: Relay(port) for party in ROLES}
        try:
            for party in ROLES:
                dial = relays[party].port if relays else port
                (run / f"{party}.toml").write_text(
                    agent_toml(party, dial, args.max_bytes, args.rpc_timeout)
                )
            agents = daemons if args.daemon else None
            bench = Bench(
                run, pool, args.n, args.changes, k, pid, metrics_port, relays, agents,
                args.max_bytes, args.rpc_timeout,
            )  # fmt: skip
            for steady in range(args.cycles + 1):
                yield measure_cycle(bench, steady)
        finally:
            for relay in relays.values():
                relay.close()


if __name__ == "__main__":
    sys.exit(main())
