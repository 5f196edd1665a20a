"""The exchange server's memory under concurrent large pushes (issue 12, item 9).

Starts the real server (the demo federation's files, in a temporary directory) with
`max_snapshot_bytes` raised to fit one push of `--mib` MiB, and `--budget` MiB as its
`max_inflight_bytes`; then `--streams` clients of one party push that many MiB each at once over
mutual TLS, in 1 MiB chunks. The payload is not a signed snapshot: the server refuses each push
at its trailer (or earlier, as `server-busy`, once the budget is held), so what is measured is
what reassembly holds, never a decoded snapshot.

Prints one JSON object: the server's resident set before the pushes and its peak (VmHWM) after,
in MiB, and each push's outcome (the refusal's rule). Run:

    .venv/bin/python benchmarks/inflight.py [--streams 4] [--mib 260] [--budget 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from invsync.agent.exchange.rejections import RULE_METADATA_KEY
from invsync.server.localfed import _await_port, command, stop, write_federation
from invsync.v1 import invsync_pb2 as pb
from invsync.v1 import invsync_pb2_grpc as pb_grpc

MIB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--mib", type=int, default=260, help="MiB each stream pushes")
    parser.add_argument(
        "--budget", type=int, default=1024, help="max_inflight_bytes in MiB (0: not set)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(Path(tmp), args.streams, args.mib, args.budget)))


def run(work: Path, streams: int, mib: int, budget: int) -> dict[str, object]:
    write_federation(work)
    toml = work / "server.toml"
    limits = f"max_snapshot_bytes = {(mib + 1) * MIB}\n"
    if budget:  # 0: leave the key out, for a server from before it existed
        limits += f"max_inflight_bytes = {budget * MIB}\n"
    toml.write_text(toml.read_text().replace("[server]\n", f"[server]\n{limits}", 1))
    (work / "logs").mkdir(exist_ok=True)
    with (work / "logs" / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            command("server", "run", "--config", str(toml)),
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            port = _await_port(proc, work)
            before = _status(proc.pid, "VmRSS")
            started = time.monotonic()
            outcomes = _push_all(work, port, streams, mib)
            return {
                "streams": streams,
                "mib_per_stream": mib,
                "budget_mib": budget,
                "rss_before_mib": round(before, 1),
                "peak_rss_mib": round(_status(proc.pid, "VmHWM"), 1),
                "wall_s": round(time.monotonic() - started, 2),
                "outcomes": outcomes,
            }
        finally:
            stop(proc)


def _status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


def _push_all(work: Path, port: int, streams: int, mib: int) -> list[str]:
    tls = work / "tls"
    creds = grpc.ssl_channel_credentials(
        (tls / "ca.pem").read_bytes(),
        (tls / "secom.key").read_bytes(),
        (tls / "secom.crt").read_bytes(),
    )
    outcomes = [""] * streams
    with grpc.secure_channel(f"localhost:{port}", creds) as channel:
        stub = pb_grpc.ExchangeStub(channel)

        def push(i: int) -> None:
            try:
                stub.PushSnapshot(_chunks(mib), timeout=600)
                outcomes[i] = "accepted"
            except grpc.RpcError as e:
                outcomes[i] = _rule(e)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(streams)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sorted(outcomes)


def _chunks(mib: int) -> Iterator[pb.SnapshotChunk]:
    data = b"\0" * MIB
    for _ in range(mib):
        yield pb.SnapshotChunk(data=data)
    yield pb.SnapshotChunk(trailer=pb.SnapshotTrailer(total_length=mib * MIB))


def _rule(error: grpc.RpcError) -> str:
    assert isinstance(error, grpc.Call)
    metadata = dict(error.trailing_metadata() or ())
    return str(metadata.get(RULE_METADATA_KEY, error.code().name))


if __name__ == "__main__":
    main()
