"""Benchmark: a reconciliation carried from the one before, against one of everything (issue 13).

    .venv/bin/python benchmarks/carry.py [--n 100000] [--changes 0.001] [--runs 5]
        [--workdir DIR]

Both parties' records as `pairing.py`'s steady cycles hold them (its cached synthetic pool
under DIR/cache, parsed here): after s steady cycles of k changes the root lists certificates
[0, n + s*k) and the subordinate [s*k, n + s*k), each side's previous snapshot being its
list of cycle s - 1, and the clock an hour later each cycle. Records of a certificate are one
object from one cycle to the next, as the exchange server's decoded snapshots share them.

It reconciles cycles 0 to 2, each carried from the one before (cycle 1 is compared in full:
cycle 0 has no previous snapshots), then times cycle 3 both ways --runs times: `reconcile` of
everything, and `reconcile_carried` from cycle 2. The findings must be equal (else it stops
with exit status 1). Prints one JSON object: the medians in seconds, the findings, and how
many certificates were compared again and carried.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from invsync.agent.gc_pause import collector_paused
from invsync.agent.model.record import CertRecord, parse_certificate
from invsync.agent.model.snapshot import Side, SnapshotHeader
from invsync.agent.reconcile.carry import Reconciled, reconcile_carried
from invsync.agent.reconcile.runner import reconcile

if __package__ in (None, ""):  # run as a script: the project root holds the benchmarks package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pairing import load_pool, per_cycle

START = datetime(2026, 12, 6, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    k = per_cycle(args.n, args.changes)
    pool = load_pool(args.workdir / "cache", args.n + 3 * k)
    started = time.perf_counter()
    roots = [_record(pem, "jprs") for pem in pool.certs]
    subs = [CertRecord(r.info) for r in roots]
    print(
        f"parsed {len(roots)} certificates in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    cycles = [_cycle(roots, subs, args.n, k, s) for s in range(4)]
    with collector_paused():
        before: Reconciled | None = None
        for cycle in cycles[:3]:  # cycle 2 is the first carried (cycle 0 has no previous)
            before = reconcile_carried(*cycle, before).reconciled
        full, carried = [], []
        for _ in range(args.runs):
            full.append(_timed(lambda: reconcile(*cycles[3])))
            carried.append(_timed(lambda: reconcile_carried(*cycles[3], before)))
    expected = reconcile(*cycles[3])
    result = reconcile_carried(*cycles[3], before)
    if result.findings != expected:
        print("error: the carried findings differ from the full reconciliation's", file=sys.stderr)
        return 1
    print(json.dumps({
        "n": args.n, "changes": args.changes, "changed_certificates": k, "runs": args.runs,
        "findings": len(expected), "compared": result.compared, "carried": result.carried,
        "full_s": round(statistics.median(s for s, _ in full), 4),
        "carried_s": round(statistics.median(s for s, _ in carried), 4),
        "full_runs_s": [round(s, 4) for s, _ in full],
        "carried_runs_s": [round(s, 4) for s, _ in carried],
    }))  # fmt: skip
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="certificates held")
    parser.add_argument("--changes", type=float, default=0.001, help="fraction changed a cycle")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/invsync-bench"))
    args = parser.parse_args(argv)
    if args.n < 1 or args.runs < 1 or not 0 <= args.changes <= 1:
        parser.error("--n and --runs must be at least 1, --changes within [0, 1]")
    return args


def _record(pem: str, operator: str) -> CertRecord:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return CertRecord(parse_certificate(der), operator=operator)


def _cycle(
    roots: list[CertRecord], subs: list[CertRecord], n: int, k: int, s: int
) -> tuple[Side, Side, datetime]:
    """Both sides after `s` steady cycles, and the clock."""
    at = START + timedelta(hours=s)
    before = max(s - 1, 0)
    root = _side("secom", "root", roots[: n + s * k], roots[: n + before * k], at, s)
    sub = _side(
        "jprs", "subordinate", subs[s * k : n + s * k], subs[before * k : n + before * k], at, s
    )
    return root, sub, at


def _side(
    party: str,
    role: str,
    records: list[CertRecord],
    previous: list[CertRecord],
    at: datetime,
    s: int,
) -> Side:
    header = SnapshotHeader(
        party=party, pairing="secom-jprs", role=role, version=s + 1, issued_at=at,
        expires_at=at + timedelta(days=7), previous_digest=b"", record_count=len(records),
        records_digest=b"", scope_issuer_spki=(),
    )  # fmt: skip
    return Side(party, records, header=header, previous=tuple(previous) if s else None)


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


if __name__ == "__main__":
    sys.exit(main())
