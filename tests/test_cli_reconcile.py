"""`invsync reconcile` on the real SECOM/JPRS demo data: formats, exit codes, `--at`, KIND:PATH.

Successful runs go through click's CliRunner; error paths run `python -m server.cli` as a
subprocess, so the real exit status and the stderr diagnostics of `run_cli` are checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner, Result

from invsync.server.cli import invsync
from tests.paths import DEMO, SECOM_JPRS

FIXTURES = SECOM_JPRS
SECOM_LOG = DEMO / "secom_issuance_log.jsonl"
JPRS_LIST = DEMO / "jprs_ca_certificates.pem"
ONE_JPRS_CERT = FIXTURES / "individual" / "JPRS_DV_G3_2019-07-11_11A27671.pem"
SECOM_HIERARCHY = FIXTURES / "secom_hierarchy_all_ccadb.pem"

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
DV_BUG = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
# The two G1 intermediates in SECOM's log; both expire on 2026-04-06.
DV_G1 = "27E093E883607E4E0E0BB1EBABAE2C9C0E55A9CF020373BFA234FE05FE0BA743"
OV_G1 = "F77CE159D3888EA2BCC35DD46472CED8CC33007E0DA6C89139CD3A270D890033"
EARLY_2021 = "2021-03-01T00:00:00Z"

LINE = re.compile(r"^(ERROR|WARNING|NOTICE) +([a-z-]+) +([0-9A-F]{64}) +(\S.*)$")
DEMO_FINDINGS = {
    ("missing-at-subordinate", OV_BUG),
    ("missing-at-subordinate", DV_BUG),
    ("doppelganger-untracked", OV_BUG),
    ("doppelganger-untracked", DV_BUG),
}


def _reconcile(*args: str | Path) -> Result:
    return CliRunner().invoke(invsync, ["reconcile", *map(str, args)])


def _demo(*extra: str) -> Result:
    return _reconcile("--root", SECOM_LOG, "--subordinate", JPRS_LIST, "--at", EARLY_2021, *extra)


def _json_findings(result: Result) -> list[dict[str, object]]:
    findings = json.loads(result.stdout)["findings"]
    assert isinstance(findings, list)
    return findings


def _subprocess(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invsync.server.cli", "reconcile", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_text_has_one_line_per_finding_with_code_and_full_sha256() -> None:
    result = _demo()
    lines = result.stdout.splitlines()
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    found = {(m.group(2), m.group(3)) for m in matches if m}
    assert len(lines) == 4
    assert found == DEMO_FINDINGS


def test_text_names_the_severity_of_each_finding() -> None:
    severities = {}
    for line in _demo().stdout.splitlines():
        match = LINE.match(line)
        assert match
        severities[match.group(2), match.group(3)] = match.group(1)
    assert severities[("missing-at-subordinate", OV_BUG)] == "ERROR"
    assert severities[("doppelganger-untracked", DV_BUG)] == "WARNING"


def test_json_is_an_object_with_a_findings_list() -> None:
    result = _demo("--format", "json")
    obj = json.loads(result.stdout)
    assert isinstance(obj, dict)
    assert obj["as_of"] == EARLY_2021
    assert obj["summary"] == {"error": 2, "warning": 2, "notice": 0}
    for finding in _json_findings(result):
        assert finding["code"] in {"missing-at-subordinate", "doppelganger-untracked"}
        assert finding["severity"] in {"error", "warning", "notice"}
        assert re.fullmatch(r"[0-9A-F]{64}", str(finding["sha256"]))
        assert isinstance(finding["message"], str) and finding["message"]


def test_json_flags_the_two_bug_1695993_certificates_missing_at_subordinate() -> None:
    findings = _json_findings(_demo("--format", "json"))
    missing = {f["sha256"]: f for f in findings if f["code"] == "missing-at-subordinate"}
    assert set(missing) == {OV_BUG, DV_BUG}
    assert {f["severity"] for f in missing.values()} == {"error"}
    assert {f["party"] for f in missing.values()} == {"subordinate"}
    assert "does not list it" in str(missing[OV_BUG]["message"])


def test_error_findings_exit_1_in_every_format() -> None:
    for fmt in ("text", "json", "markdown"):
        assert _demo("--format", fmt).exit_code == 1


def test_the_entry_point_exits_1_on_error_findings_whatever_their_number() -> None:
    args = ("--root", SECOM_LOG, "--subordinate", ONE_JPRS_CERT, "--at", "2026-04-01T00:00:00Z")
    assert _subprocess(*args).returncode == 1


def test_the_entry_point_rejects_several_values_after_one_option() -> None:
    result = _subprocess("--root", SECOM_LOG, JPRS_LIST, "--subordinate", JPRS_LIST)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"Error: Got unexpected extra argument ({JPRS_LIST})" in result.stderr


def test_no_findings_says_so_and_exits_0() -> None:
    result = _reconcile("--root", JPRS_LIST, "--subordinate", JPRS_LIST, "--at", EARLY_2021)
    assert result.exit_code == 0
    assert result.stdout == "no findings\n"


def test_a_hundred_error_findings_still_exit_1() -> None:
    args: list[str | Path] = [
        "--root",
        SECOM_HIERARCHY,
        "--subordinate",
        ONE_JPRS_CERT,
        "--at",
        EARLY_2021,
    ]
    findings = _json_findings(_reconcile(*args, "--format", "json"))
    errors = sum(1 for f in findings if f["severity"] == "error")
    assert errors > 100
    assert _reconcile(*args).exit_code == 1


def test_markdown_is_an_offline_report_with_a_findings_table() -> None:
    result = _demo("--format", "markdown")
    assert result.stdout.startswith("# invsync report: offline\n")
    assert "- As of: 2021-03-01T00:00:00Z" in result.stdout
    assert "| error | 2 |" in result.stdout
    rows = [line for line in result.stdout.splitlines() if OV_BUG in line]
    assert any(row.startswith("| error | missing-at-subordinate |") for row in rows)
    assert any(row.startswith("| warning | doppelganger-untracked |") for row in rows)
    # The records compared give the certificate columns, as an exchanged report's body does.
    (missing,) = [row for row in rows if row.startswith("| error | missing-at-subordinate |")]
    assert "| OU=Security Communication RootCA2, O=SECOM Trust Systems CO.,LTD., C=JP " in missing
    assert "| 22B9B172FA931A5B74 | 2020-07-10T04:48:56Z | 2029-05-29T05:00:39Z |" in missing
    assert "## What to do\n\n- `missing-at-subordinate`: Subordinate:" in result.stdout


def test_at_turns_an_expired_missing_certificate_into_a_notice() -> None:
    def severities(at: str) -> tuple[dict[str, str], int]:
        args: list[str | Path] = ["--root", SECOM_LOG, "--subordinate", ONE_JPRS_CERT, "--at", at]
        result = _reconcile(*args, "--format", "json")
        missing = [f for f in _json_findings(result) if f["code"] == "missing-at-subordinate"]
        assert result.exit_code == 1  # error findings, however many
        errors = sum(1 for f in _json_findings(result) if f["severity"] == "error")
        return {str(f["sha256"]): str(f["severity"]) for f in missing}, errors

    before, before_errors = severities("2026-04-01T00:00:00Z")
    after, after_errors = severities("2026-05-01T00:00:00Z")
    assert before[DV_G1] == before[OV_G1] == "error"
    assert after[DV_G1] == after[OV_G1] == "notice"
    assert after[OV_BUG] == "error"
    assert (before_errors, after_errors) == (11, 9)


def test_an_expired_certificate_message_says_when_it_expired() -> None:
    args: list[str | Path] = [
        "--root", SECOM_LOG, "--subordinate", ONE_JPRS_CERT, "--at", "2026-05-01T00:00:00Z"
    ]  # fmt: skip
    lines = [line for line in _reconcile(*args).stdout.splitlines() if OV_G1 in line]
    assert len(lines) == 1
    assert lines[0].startswith("NOTICE  missing-at-subordinate")
    assert lines[0].endswith("(expired 2026-04-06)")


def test_kind_prefix_overrides_detection(tmp_path: Path) -> None:
    log_txt = tmp_path / "secom-log.txt"
    shutil.copy(SECOM_LOG, log_txt)
    jprs_txt = tmp_path / "jprs-list.txt"
    shutil.copy(JPRS_LIST, jprs_txt)
    result = _reconcile(
        "--root", f"issuance-log:{log_txt}", "--subordinate", f"pem:{jprs_txt}",
        "--at", EARLY_2021, "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 1
    assert {(f["code"], f["sha256"]) for f in _json_findings(result)} == DEMO_FINDINGS


def test_without_the_kind_prefix_a_txt_issuance_log_is_not_read_as_one(tmp_path: Path) -> None:
    log_txt = tmp_path / "secom-log.txt"
    shutil.copy(SECOM_LOG, log_txt)
    result = _subprocess("--root", log_txt, "--subordinate", JPRS_LIST)
    assert result.returncode == 2
    assert f"error: {log_txt}: no certificate found" in result.stderr


def test_a_wrong_kind_prefix_fails_naming_the_file() -> None:
    result = _subprocess("--root", f"der:{JPRS_LIST}", "--subordinate", JPRS_LIST)
    assert result.returncode == 2
    assert f"error: {JPRS_LIST}: not a DER certificate" in result.stderr


def test_a_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-list.pem"
    result = _subprocess("--root", SECOM_LOG, "--subordinate", missing)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: {missing}: cannot read: No such file or directory" in result.stderr
    hint = "hint: Fix or remove the named file, line or entry, then run again; nothing read was"
    assert hint in result.stderr  # no "import": the hint is shared by every reader of sources
    assert "Traceback" not in result.stderr


def test_a_bad_issuance_log_line_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "issuance.jsonl"
    good = SECOM_LOG.read_text().splitlines()[:2]
    log.write_text("\n".join([*good, '{"certificate": "not a certificate"}']) + "\n")
    result = _subprocess("--root", log, "--subordinate", JPRS_LIST)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: {log}:3: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_line_that_is_not_json_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "issuance.jsonl"
    log.write_text(SECOM_LOG.read_text().splitlines()[0] + "\nnot json\n")
    result = _subprocess("--root", log, "--subordinate", JPRS_LIST)
    assert result.returncode == 2
    assert f"error: {log}:2: invalid JSON" in result.stderr


def test_a_bad_at_is_a_usage_error() -> None:
    result = _subprocess("--root", SECOM_LOG, "--subordinate", JPRS_LIST, "--at", "early 2021")
    assert result.returncode == 2
    assert "Invalid value for '--at': 'early 2021' is not an RFC 3339 time" in result.stderr


def test_both_sides_are_required() -> None:
    result = _reconcile("--root", SECOM_LOG)
    assert result.exit_code == 2
    assert "Missing option '--subordinate'" in result.output


def test_reconcile_has_help() -> None:
    result = CliRunner().invoke(invsync, ["reconcile", "--help"])
    assert result.exit_code == 0
    for text in ("--root SOURCE", "--subordinate SOURCE", "--at TIME", "KIND:PATH", "Exit status"):
        assert text in result.stdout
    assert "[text|json|markdown]" in result.stdout


def test_max_source_bytes_raises_the_cap_the_refusal_names() -> None:
    size = SECOM_LOG.stat().st_size
    assert size > JPRS_LIST.stat().st_size
    cap = ("--max-source-bytes", str(size - 1))
    refused = _subprocess("--root", SECOM_LOG, "--subordinate", JPRS_LIST, *cap)
    assert refused.returncode == 2 and refused.stdout == ""
    assert (
        f"error: {SECOM_LOG}: file is {size} bytes, larger than the source size cap of "
        f"{size - 1} bytes (raise it with --max-source-bytes or agent.max_source_bytes)"
    ) in refused.stderr
    assert _demo("--max-source-bytes", str(size)).exit_code == 1  # compared: error findings
