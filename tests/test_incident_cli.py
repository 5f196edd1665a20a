"""`invsync incident draft` on the real SECOM/JPRS case (Mozilla bug 1695993): the demo run as
a user runs it (a server and two agents), then one draft of both certificates and their three
failures from the signed report files, with and without the agent's database."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from invsync.agent.errors import ReportError
from invsync.agent.report.files import report_files
from invsync.server.cli import invsync
from tests.paths import DEMO

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
DV_BUG = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
SIBLINGS = (
    "04C1871C68607515389FA3B0CFB83DBE6A4AF05E8C80E745702969F240606E36",
    "90EE548EBACACAB40207A61A378CE186B94D24AE7C55BFC83065EA96072E2B38",
    "11A27671872265445CB7258EB2844EE614D14777B9F6F73BE9532122F21FAD0D",
    "927E9BFC0D75C3146070C3F3AFDD4A2C10F765289124997CC52CFD1209E763CB",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("incident") / "demo"
    command = [sys.executable, "-m", "invsync.server.cli", "demo", "--workdir", str(workdir)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return workdir


def _draft(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(invsync, ["incident", "draft", *args])
    return result.exit_code, result.output


def _secom_case(demo: Path, *extra: str) -> str:
    reports = str(demo / "reports" / "secom")
    code, text = _draft(
        "--certificate", OV_BUG[:8], "--certificate", DV_BUG[:8], "--dir", reports, *extra
    )
    assert code == 0, text
    return text


def test_one_draft_holds_both_certificates_and_the_three_failures(demo: Path) -> None:
    text = _secom_case(demo)
    summary = text[text.index("### Summary") : text.index("### Impact")]
    appendix = text[text.index("### Appendix") :]
    for sha in (OV_BUG, DV_BUG):
        assert f"(`{sha[:16]}`)" in summary
        assert f"| N/A | {sha} | CN=JPRS " in appendix
        assert f"https://crt.sh/?sha256={sha}" in appendix
    assert (
        "1. **Untracked at the subordinate** (`missing-at-subordinate`): secom issued 2 CA"
        in summary
    )
    assert "2. **Outside the audit** (`not-in-audit-scope`): 2 live CA certificate(s)" in summary
    assert (
        "3. **Left unrevoked** (`missing-at-subordinate`): 2 CA certificate(s) that jprs" in summary
    )
    assert summary.count("for 234 days, 2020-07-10 to 2021-03-01") == 2
    assert "certificate(s), 3 failure(s)" in text
    for sha in SIBLINGS:
        assert f"| https://crt.sh/?sha256={sha} | doppelganger of " in appendix
    # Names are shown once, readable: no RFC 4514 escape, let alone one doubled for Markdown.
    assert "O=Japan Registry Services Co., Ltd., C=JP |" in appendix
    assert "| OU=Security Communication RootCA2, O=SECOM Trust Systems CO.,LTD., C=JP |" in appendix
    assert "\\" not in appendix


def test_the_timeline_has_the_reissue_the_siblings_and_the_report(demo: Path) -> None:
    text = _secom_case(demo)
    body = report_files(demo / "reports" / "secom")[-1].body
    assert "| 2020-07-10T04:48:56Z | JPRS Organization Validation Authority - G3" in text
    assert "| 2020-07-10T12:47:41Z | doppelganger of 21C066332D6B92DD: " in text
    assert "| 2019-07-11T04:45:52Z | doppelganger of 659B7A518C6C9EB1: " in text
    assert (
        f"report {body.report_id[:12]} (as of 2021-03-01T00:00:00Z), comparing secom snapshot v1"
        in text
    )
    assert "| 2020-07-17T04:48:56Z | due: missing-at-subordinate on 21C066332D6B92DD" in text


def test_no_local_path_and_no_import_time_reaches_the_draft(demo: Path) -> None:
    for text in (_secom_case(demo), _secom_case(demo, "--config", str(demo / "secom.toml"))):
        assert str(demo) not in text and str(DEMO) not in text
        assert "issuance-log:" not in text and "secom_issuance_log" not in text
        assert "/tmp" not in text and ".jsonl" not in text and ".pem" not in text


def test_with_the_agents_database_the_first_signed_snapshots_appear(demo: Path) -> None:
    body = report_files(demo / "reports" / "secom")[-1].body
    text = _secom_case(demo, "--config", str(demo / "secom.toml"))
    assert "first in secom's signed inventory: 04C1871C68607515, 11A2767187226544, " in text
    assert f"| secom snapshot v1 sha256:{body.root.digest} |" in text
    # The subordinate's view: secom's snapshot as jprs verified it, jprs's own without the two.
    text = _secom_case(demo, "--db", str(demo / "state" / "jprs.db"))
    assert "first in secom's signed inventory: 04C1871C68607515, 11A2767187226544, 21C0" in text
    assert f"| jprs snapshot v1 sha256:{body.subordinate.digest} |" in text
    assert "first in jprs's signed inventory: 04C1871C68607515, 11A2767187226544, 90EE" in text


def test_open_errors_make_the_same_three_failures(demo: Path) -> None:
    code, text = _draft("--open-errors", "--config", str(demo / "jprs.toml"))
    assert code == 0, text
    assert "2 certificate(s), 3 failure(s)" in text and "Contributing findings" not in text


def _refused(*args: str) -> str:
    result = CliRunner().invoke(invsync, ["incident", "draft", *args])
    assert isinstance(result.exception, ReportError), result.output
    return str(result.exception)


def test_references_that_name_nothing_or_too_much_are_refused(demo: Path) -> None:
    reports = str(demo / "reports" / "secom")
    assert _refused("missing-at-root:21C0", "--dir", reports) == (
        "'missing-at-root:21C0' names 0 findings of the report (none)"
    )
    assert _refused("--certificate", "FF", "--dir", reports) == (
        "--certificate 'FF' names 0 certificates with findings (none)"
    )
    assert _refused("--certificate", "", "--dir", reports) == (
        "--certificate '' names 2 certificates with findings (21C066332D6B92DD, 659B7A518C6C9EB1)"
    )
    assert _refused("--dir", reports) == "no finding named"
    assert _refused("--open-errors", "--pairing", "secom-nii", "--dir", reports) == (
        f"no report of pairing 'secom-nii' in {reports}; name one with --report"
    )
    [latest] = report_files(demo / "reports" / "secom")
    assert _refused("--open-errors", "--pairing", "secom-nii", "--report", str(latest.path)) == (
        f"report {latest.path} is of pairing 'secom-jprs', not 'secom-nii'"
    )


def test_a_reference_naming_nothing_exits_2_with_its_message(demo: Path) -> None:
    command = [sys.executable, "-m", "invsync.server.cli", "incident", "draft", "FFFF"]
    reports = str(demo / "reports" / "secom")
    result = subprocess.run(
        [*command, "--dir", reports], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "error: 'FFFF' names 0 findings of the report (none)" in result.stderr
    assert "hint: Name a finding as CODE:SHA256" in result.stderr


def test_without_report_the_cli_takes_the_latest_in_the_directory(tmp_path: Path) -> None:
    assert _refused(OV_BUG[:8], "--dir", str(tmp_path)) == (
        f"no report in {tmp_path}; name one with --report"
    )


def test_without_pins_the_draft_says_its_signatures_were_not_checked(demo: Path) -> None:
    text = _secom_case(demo)
    assert "_Signatures not checked: no key pinned (--pin or --config)." in text


def test_with_the_agents_pins_every_report_is_checked(demo: Path) -> None:
    text = _secom_case(demo, "--config", str(demo / "secom.toml"))
    assert "_Signatures checked: each of the 1 report(s) is signed by the server and both" in text


def test_a_report_the_pinned_keys_do_not_sign_is_refused_naming_its_file(demo: Path) -> None:
    command = [sys.executable, "-m", "invsync.server.cli", "incident", "draft", "--open-errors"]
    reports = demo / "reports" / "secom"
    (latest,) = report_files(reports)
    wrong_key = "ab" * 32
    result = subprocess.run(
        [*command, "--dir", str(reports), "--pin", f"secom={wrong_key}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"error: {latest.path}: a signature does not verify with the pinned keys" in (
        result.stderr
    )
    assert f"untrusted (pinned key is {wrong_key})" in result.stderr
    assert result.stdout == ""


def _without_jprs(demo: Path, into: Path) -> Path:
    """The demo's report as SECOM's agent writes it before JPRS co-signed: JPRS's signature gone."""
    (latest,) = report_files(demo / "reports" / "secom")
    envelope = json.loads(latest.path.read_text())
    jprs = next(s for s in latest.body.signers if s.name == "jprs").keyid
    envelope["signatures"] = [s for s in envelope["signatures"] if s["keyid"] != jprs]
    into.mkdir(exist_ok=True)
    copy = into / latest.path.name.replace(".report.json", "-unsigned.report.json")
    copy.write_text(json.dumps(envelope))
    shutil.copy(latest.path, into / latest.path.name)
    return copy


def test_a_report_a_party_has_not_cosigned_is_left_out(demo: Path, tmp_path: Path) -> None:
    _without_jprs(demo, tmp_path / "reports")
    config = str(demo / "secom.toml")
    text = _secom_case(demo, "--dir", str(tmp_path / "reports"), "--config", config)
    assert "_Signatures checked: each of the 1 report(s) is signed by the server and both" in text


def test_naming_a_report_a_party_has_not_cosigned_is_refused(demo: Path, tmp_path: Path) -> None:
    unsigned = _without_jprs(demo, tmp_path / "reports")
    command = [sys.executable, "-m", "invsync.server.cli", "incident", "draft", "--open-errors"]
    config = str(demo / "secom.toml")
    result = subprocess.run(
        [*command, "--report", str(unsigned), "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"error: {unsigned}: not signed by every party yet; name a complete report" in (
        result.stderr
    )
    assert "hint: A party has not co-signed the report yet" in result.stderr
    assert result.stdout == ""
