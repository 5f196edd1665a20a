"""Issue 12: the exit codes scripts rely on, the same for every command (README "Exit codes").

Each case runs the command group's entry (`server.cli.main`, which the console script's
`console` calls, hence `run_cli`) in-process: 0 done,
1 error findings or a failed verification, 2 usage or bad input, 3 could not run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from invsync.agent.cli import entry
from invsync.agent.errors import (
    ConfigError,
    InvsyncError,
    SourceError,
    StoreError,
    TransportError,
)
from invsync.agent.evidence.failures import BundleError, CheckFailed
from invsync.agent.exchange.ca_key import KeyCommandError, KeyCommandInputError
from invsync.agent.exchange.ca_lock import CaBusy
from invsync.agent.exchange.ca_sign import AssemblyError
from invsync.agent.store.lock import DatabaseInUse
from invsync.server.cli import main
from tests.paths import DEMO, SECOM_JPRS
from tests.test_cli_report import _report

SECOM_LOG = DEMO / "secom_issuance_log.jsonl"
JPRS_LIST = DEMO / "jprs_ca_certificates.pem"
ONE_JPRS_CERT = SECOM_JPRS / "individual" / "JPRS_DV_G3_2019-07-11_11A27671.pem"
EARLY_2021 = "2021-03-01T00:00:00Z"


def _run(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["invsync", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    code = exited.value.code
    assert isinstance(code, int)
    return code


def _bad_config(tmp: Path) -> list[str]:
    config = tmp / "agent.toml"
    config.write_text("this is [not toml\n")
    return ["agent", "run", "--once", "--config", str(config)]


def _unreadable_source(tmp: Path) -> list[str]:
    bad = tmp / "bad.jsonl"
    bad.write_text("{not json\n")
    return ["reconcile", "--root", str(bad), "--subordinate", str(JPRS_LIST)]


def _unverified_report(tmp: Path) -> list[str]:
    return ["report", "verify", str(_report(tmp))]


def _unreadable_report(tmp: Path) -> list[str]:
    (tmp / "report.json").write_text("not json")
    return ["report", "verify", str(tmp / "report.json")]


CASES: dict[str, tuple[Callable[[Path], list[str]], int]] = {
    "reconcile-no-findings": (
        lambda _: [
            "reconcile",
            "--root",
            str(JPRS_LIST),
            "--subordinate",
            str(JPRS_LIST),
            "--at",
            EARLY_2021,
        ],
        0,
    ),
    "reconcile-error-findings": (
        lambda _: [
            "reconcile",
            "--root",
            str(SECOM_LOG),
            "--subordinate",
            str(ONE_JPRS_CERT),
            "--at",
            "2026-04-01T00:00:00Z",
        ],
        1,
    ),
    "reconcile-usage-error": (lambda _: ["reconcile", "--root", str(JPRS_LIST)], 2),
    "reconcile-unknown-option": (lambda _: ["reconcile", "--no-such-option"], 2),
    "reconcile-unreadable-source": (_unreadable_source, 2),
    "report-verify-unverified": (_unverified_report, 1),
    "report-verify-unreadable": (_unreadable_report, 2),
    "report-verify-missing-file": (lambda tmp: ["report", "verify", str(tmp / "absent")], 2),
    "agent-run-bad-config": (_bad_config, 2),
    "evidence-verify-not-a-bundle": (
        lambda tmp: ["evidence", "verify", str(tmp), "--server", "x", "--pin", "x=00"],
        2,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_each_command_and_situation_exits_with_its_code(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, expected = CASES[case]
    assert _run(monkeypatch, args(tmp_path)) == expected


def _group_raising(error: BaseException) -> click.Group:
    @click.group()
    def group() -> None:
        pass

    @group.command("fail")
    def fail() -> None:
        raise error

    return group


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TransportError("failed to connect to all addresses"), 3),
        (StoreError("database disk image is malformed"), 3),
        (DatabaseInUse("another invsync daemon (pid 1) holds it"), 3),
        (KeyCommandError("key command `p11-sign` failed (exit status 1)"), 3),
        (CaBusy("ca/lock: another `tls sign` or `tls revoke` (pid 1) still holds this CA"), 3),
        (AssemblyError("the certificate assembled does not verify with the CA's key"), 3),
        (KeyCommandInputError("--key-command is empty: give the command that signs"), 2),
        (SourceError("a.pem:1: not a certificate"), 2),
        (ConfigError("x.toml: server.address: missing"), 2),
        (BundleError("not a bundle"), 2),
        (InvsyncError("anything else"), 2),
        (CheckFailed("manifest", "entries.json", "SHA-256 differs"), 1),
    ],
)
def test_run_cli_maps_each_error_class_through_the_one_table(
    error: InvsyncError,
    expected: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["invsync", "fail"])
    with pytest.raises(SystemExit) as exited:
        entry.run_cli(_group_raising(error))
    assert exited.value.code == expected == entry.exit_code_of(error)
    assert capsys.readouterr().err == error.diagnostics() + "\n"


def test_an_unexpected_exception_exits_3_with_one_line_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(entry.TRACEBACK_VARIABLE, raising=False)
    monkeypatch.setattr(sys, "argv", ["invsync", "fail"])
    with pytest.raises(SystemExit) as exited:
        entry.run_cli(_group_raising(KeyError("boom\nagain")))
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: internal error: KeyError: ")
    assert "Traceback" not in err
    assert f"{entry.TRACEBACK_VARIABLE}=1" in err


def test_the_traceback_of_an_internal_error_is_shown_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(entry.TRACEBACK_VARIABLE, "1")
    monkeypatch.setattr(sys, "argv", ["invsync", "fail"])
    with pytest.raises(SystemExit) as exited:
        entry.run_cli(_group_raising(RuntimeError("boom")))
    assert exited.value.code == 3
    assert "Traceback" in capsys.readouterr().err


def test_every_exit_code_is_documented_in_the_help_and_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "## Exit codes" in readme
    assert entry.EXIT_CODES_HELP.startswith("Exit codes")
    assert set(entry.EXIT_CODES.values()) == {1, 2, 3}
