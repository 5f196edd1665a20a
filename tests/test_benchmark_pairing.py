"""benchmarks/pairing.py at a tiny n: its lines parse, carry every key, and find what it expects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import pairing
from tests.paths import ROOT

pytestmark = pytest.mark.integration

KEYS = {
    "cycle",
    "index",
    "n",
    "changes",
    "max_bytes",
    "rpc_timeout_s",
    "agents",
    "changed_certificates",
    "listed_secom",
    "listed_jprs",
    "wall_s",
    "secom_s",
    "jprs_s",
    "cpu_s_server",
    "cpu_s_secom",
    "cpu_s_jprs",
    "cpu_s_bench",
    "peak_rss_mib_server",
    "server_peak_is_cycle_peak",
    "peak_rss_mib_secom",
    "peak_rss_mib_jprs",
    "swap_total_mib",
    "peak_swap_mib_server",
    "peak_swap_mib_secom",
    "peak_swap_mib_jprs",
    "wire_bytes_secom_to_server",
    "wire_bytes_server_to_secom",
    "tcp_connections_secom",
    "wire_bytes_jprs_to_server",
    "wire_bytes_server_to_jprs",
    "tcp_connections_jprs",
    "rpcs_both_sides",
    "rpcs_both_sides_total",
    "server_rpc_s_both_sides",
    "exit_secom",
    "exit_jprs",
    "report_versions",
    "reports_agree",
    "findings_measured",
    "findings_expected",
    "findings_match",
    "findings_match_versions",
    "findings_measured_by_code",
    "findings_expected_by_code",
}


def _lines(tmp_path: Path, *more: str) -> list[dict[str, Any]]:
    # n=30, 10 %: three certificates dropped by JPRS and three added to both in a steady cycle.
    args = ["--n", "30", "--changes", "0.1", "--workdir", str(tmp_path), *more]
    bench = [sys.executable, str(ROOT / "benchmarks" / "pairing.py"), *args]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    for line in lines:
        assert set(line) == KEYS
        assert line["findings_measured"] == line["findings_expected"], line
    return lines


def test_a_cold_and_a_steady_cycle_find_what_they_expect(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "--cycles", "1")
    assert [line["cycle"] for line in lines] == ["cold", "steady"]
    for line in lines:
        assert line["agents"] == "once"
        assert line["findings_measured"] == line["findings_expected"], line
        assert line["findings_measured_by_code"] == line["findings_expected_by_code"], line
        # Exit 1 from --once: the steady cycle's report holds error findings by design.
        exit_code = 1 if line["cycle"] == "steady" else 0
        assert line["reports_agree"] and line["exit_secom"] == line["exit_jprs"] == exit_code, line
        assert line["wire_bytes_secom_to_server"] > 0 and line["rpcs_both_sides_total"] > 0
    assert lines[1]["findings_expected_by_code"] == {
        "disappeared": 3,
        "missing-at-subordinate": 3,
    }
    for line in lines:  # the default limits; swap sampled for the server alone
        assert line["max_bytes"] is None and line["rpc_timeout_s"] is None, line
        assert line["peak_swap_mib_secom"] is None and line["peak_swap_mib_server"] >= 0, line
    assert (tmp_path / "cache" / "certs.pem").exists()  # kept for the next run
    assert not list(tmp_path.glob("run-*"))  # the federation is not, without --keep


def test_daemons_run_each_steady_cycle_on_sighup(tmp_path: Path) -> None:
    lines = _lines(tmp_path, "--cycles", "2", "--daemon", "--keep")
    assert [line["cycle"] for line in lines] == ["cold", "steady", "steady"]
    for line in lines:
        assert line["agents"] == "daemon" and line["exit_secom"] is None, line
        assert line["reports_agree"] and line["findings_match"], line
        assert line["findings_match_versions"], line
        assert line["cpu_s_secom"] > 0 and line["peak_rss_mib_jprs"] > 0, line
        assert line["peak_swap_mib_jprs"] is not None and line["peak_swap_mib_jprs"] >= 0, line
    # Each steady cycle pushed again: three certificates more, three fewer at JPRS.
    versions = [line["report_versions"] for line in lines]
    assert versions == [{"secom": v, "jprs": v} for v in (1, 2, 3)]
    assert lines[2]["findings_expected_by_code"] == {
        "disappeared": 3,
        "missing-at-subordinate": 6,
    }
    # Three cycles each, then stopped by the benchmark (SIGTERM) as it ended.
    for party in ("secom", "jprs"):
        (log,) = tmp_path.glob(f"run-*/logs/{party}-daemon.log")
        text = log.read_text()
        assert text.count(f"{party}: cycle ended after ") == 3, text
        assert text.rstrip().endswith(f"{party}: stopped"), text


def test_a_daemon_that_logs_a_failed_cycle_stops_the_benchmark(tmp_path: Path) -> None:
    """A daemon survives a failed cycle and ends it all the same: its figures are no cycle's."""
    (tmp_path / "logs").mkdir()
    daemons = pairing.Daemons(tmp_path, {})
    log = daemons.log("jprs")
    log.write_bytes(b"jprs: collected 30 certificates\njprs: cycle ended after 1.0 s; ...\n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pairing._cycles_ended(daemons, "jprs", alive) == 1
        with log.open("ab") as more:
            more.write(b"ERROR invsync.agent cycle failed: the server is unreachable\n")
            more.write(b"jprs: cycle ended after 0.2 s; ...\n")
        with pytest.raises(pairing.BenchError, match=r"^daemon jprs logged a failed cycle; see "):
            pairing._cycles_ended(daemons, "jprs", alive)
    finally:
        alive.kill()
        alive.wait()
    with pytest.raises(pairing.BenchError, match=r"^daemon jprs exited with -9; see "):
        pairing._cycles_ended(daemons, "jprs", alive)


def test_max_bytes_raises_the_limits_of_both_agents_and_the_server(tmp_path: Path) -> None:
    more = ("--max-bytes", "300000000", "--rpc-timeout", "77")
    lines = _lines(tmp_path, "--cycles", "0", "--daemon", "--keep", *more)
    assert [(line["max_bytes"], line["rpc_timeout_s"]) for line in lines] == [(300000000, 77)]
    (run,) = tmp_path.glob("run-*")
    server = (run / "server.toml").read_text()
    assert "max_snapshot_bytes = 300000000\nmax_inflight_bytes = 1200000000\n" in server
    for party in ("secom", "jprs"):
        agent = (run / f"{party}.toml").read_text()
        assert "max_source_bytes = 300000000\nmax_snapshot_bytes = 300000000\n" in agent
        assert "rpc_timeout_seconds = 77\n" in agent


def test_a_source_beyond_max_bytes_fails_the_cycle_and_names_the_log(tmp_path: Path) -> None:
    """The limits reach the agents: 30 certificates' PEM (about 22 kB) is refused at 4 kB."""
    args = ["--n", "30", "--cycles", "0", "--daemon", "--max-bytes", "4096"]
    bench = [sys.executable, str(ROOT / "benchmarks" / "pairing.py"), *args]
    bench += ["--workdir", str(tmp_path)]
    done = subprocess.run(bench, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert "logged a failed cycle; see " in done.stderr, done.stderr
    logs = "".join(log.read_text() for log in tmp_path.glob("run-*/logs/*-daemon.log"))
    assert "larger than the source size cap of 4096 bytes" in logs, logs


@pytest.mark.parametrize("option", ["--max-bytes", "--rpc-timeout"])
def test_the_arguments_refuse_a_limit_below_one(
    option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        pairing._arguments([option, "0"])
    assert exc.value.code == 2
    assert f"error: {option} must be at least 1" in capsys.readouterr().err


def test_what_a_report_must_hold_follows_the_versions_it_compares() -> None:
    # The same snapshots' cycle: the scenario's expectation.
    for steady in range(4):
        expected = pairing.expected_findings(10, steady)
        assert pairing.expected_for_versions(10, steady + 1, steady + 1) == expected
    # SECOM's push of steady cycle 1 reported before JPRS's (seen at 1,000,000): SECOM's
    # 10 new certificates are missing at JPRS, and JPRS dropped nothing yet.
    assert pairing.expected_for_versions(10, 2, 1) == {"missing-at-subordinate": 10}
    assert pairing.expected_for_versions(10, 3, 2) == {
        "disappeared": 10,
        "missing-at-subordinate": 20,
    }
    assert pairing.expected_for_versions(10, 1, 2) is None  # JPRS ahead: not worked out
    assert pairing.expected_for_versions(10, 1, 0) is None  # JPRS not pushed yet
    assert pairing.expected_findings(0, 2) == {}
