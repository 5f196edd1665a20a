"""`invsync demo` as a user runs it: a real subprocess starting a server and two agents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

OV_BUG = "21C066332D6B92DD9A253E2637684A5BC3E31357F863BED7A2F98C8459A33B62"
DV_BUG = "659B7A518C6C9EB18AA1EB35AEBA7A0247817B898C1FA1840F97D2877D9A20E4"
COMPLETE = "complete: server valid, root valid, subordinate valid"


def _demo(workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invsync.server.cli", "demo", "--workdir", str(workdir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (no psutil, no pgrep)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended while we looked
            continue
        line = " ".join(arg.decode(errors="replace") for arg in args)
        if text in line:
            found.append(line)
    return found


def _report_paths(stdout: str) -> list[Path]:
    return [Path(line.strip()) for line in stdout.splitlines() if line.startswith("  /")]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("demo-run") / "demo"
    result = _demo(workdir)
    assert result.returncode == 0, result.stderr
    return workdir, result.stdout


def test_demo_flags_both_bug_1695993_certificates(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    missing = [line for line in stdout.splitlines() if " missing-at-subordinate " in line]
    assert len(missing) == 2
    assert any(line.startswith("ERROR") and OV_BUG in line for line in missing)
    assert any(line.startswith("ERROR") and DV_BUG in line for line in missing)
    assert "findings for pairing secom-jprs as of 2021-03-01T00:00:00Z (8):" in stdout
    for code in ("not-in-audit-scope", "doppelganger-untracked", "profile-deviation"):
        flagged = [line for line in stdout.splitlines() if f" {code} " in line]
        assert any(OV_BUG in line for line in flagged), code
        assert any(DV_BUG in line for line in flagged), code
    # JPRS's profile (16-byte serials) applies from 2019-07-01: its 9-byte CAs of 2016 and
    # 2018, issued before, are no deviation; the two of 2020-07-10 are.
    deviating = [line for line in stdout.splitlines() if " profile-deviation " in line]
    assert len(deviating) == 2


def test_demo_says_where_it_works_and_that_the_server_uses_mutual_tls(
    demo_run: tuple[Path, str],
) -> None:
    workdir, stdout = demo_run
    assert stdout.startswith(f"demo directory: {workdir}\n")
    assert "exchange server listening on 127.0.0.1:" in stdout
    assert "(mutual TLS)" in stdout


def test_demo_prints_report_paths_that_exist(demo_run: tuple[Path, str]) -> None:
    workdir, stdout = demo_run
    paths = _report_paths(stdout)
    names = sorted(p.relative_to(workdir / "reports").parent.name for p in paths)
    assert names == ["jprs", "secom"]
    assert all(path.is_file() for path in paths)
    for path in paths:
        stem = path.name.removesuffix(".report.json")
        assert {p.name for p in path.parent.iterdir()} == {
            f"{stem}{suffix}" for suffix in (".report.json", ".md", ".html", ".csv")
        }
    assert (
        f"open {paths[0].with_name(paths[0].name.removesuffix('.report.json') + '.html')}" in stdout
    )


def test_demo_reports_are_identical_and_signed_three_times(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    reports = [p for p in _report_paths(stdout) if p.suffix == ".json"]
    secom, jprs = (json.loads(p.read_text()) for p in reports)
    assert secom["payload"] == jprs["payload"]
    assert len(secom["signatures"]) == 3


def test_demo_ends_with_a_complete_verification(demo_run: tuple[Path, str]) -> None:
    _, stdout = demo_run
    assert stdout.endswith(COMPLETE + "\n")
    for role, name in (("server", "demo-exchange"), ("root", "secom"), ("subordinate", "jprs")):
        lines = [line.split() for line in stdout.splitlines() if line.startswith(f"  {role} ")]
        assert [(line[1], line[-1]) for line in lines] == [(name, "valid")]


def test_demo_pins_every_signer_and_so_do_the_pages_the_agents_wrote(
    demo_run: tuple[Path, str],
) -> None:
    # The demo made the three keys and pins them; each agent pins them from its configuration:
    # nothing is "valid" for being signed by a key the report lists about itself.
    _, stdout = demo_run
    assert "unverified" not in stdout
    for path in _report_paths(stdout):
        stem = path.name.removesuffix(".report.json")
        markdown = path.with_name(f"{stem}.md").read_text()
        assert "Signatures complete: server valid, root valid, subordinate valid." in markdown
        assert "unverified" not in markdown
        page = path.with_name(f"{stem}.html").read_text()
        assert "<strong>Signatures complete</strong>" in page


def test_demo_leaves_no_process_behind(demo_run: tuple[Path, str]) -> None:
    workdir, _ = demo_run
    assert _processes_mentioning(str(workdir)) == []


def test_demo_runs_again_over_its_own_previous_run(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = _demo(workdir)
    assert first.returncode == 0, first.stderr
    (workdir / "logs" / "leftover.txt").write_text("from the first run\n")
    second = _demo(workdir)
    assert second.returncode == 0, second.stderr
    assert second.stdout.endswith(COMPLETE + "\n")
    assert not (workdir / "logs" / "leftover.txt").exists()
    assert _processes_mentioning(str(workdir)) == []


def test_demo_refuses_a_directory_that_is_not_a_previous_demo(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me\n")
    result = _demo(workdir)
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        f"error: {workdir}: not empty and not a previous demo directory; choose another"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert [p.name for p in workdir.iterdir()] == ["notes.txt"]
    assert (workdir / "notes.txt").read_text() == "keep me\n"


def test_the_refusal_hint_says_what_to_do_about_the_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me\n")
    result = _demo(tmp_path)
    assert "hint: Pass --workdir a new or empty directory" in result.stderr
    assert "logs/" not in result.stderr


def test_demo_uses_an_existing_empty_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "empty"
    workdir.mkdir()
    result = _demo(workdir)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(COMPLETE + "\n")
    assert (workdir / ".invsync-demo").is_file()


def test_the_commands_the_demo_prints_verify_its_whole_history(
    demo_run: tuple[Path, str], tmp_path: Path
) -> None:
    # Issue 11's acceptance: after the demo, export its evidence and verify it offline with the
    # three demo keys pinned, exactly as the demo tells the user to.
    _, stdout = demo_run
    export, verify = (
        line.split() for line in stdout.splitlines() if line.startswith("  invsync evidence ")
    )
    assert export[:3] == ["invsync", "evidence", "export"]
    assert verify[:3] == ["invsync", "evidence", "verify"]
    bundle = str(tmp_path / "bundle")
    cli = [sys.executable, "-m", "invsync.server.cli"]
    exported = subprocess.run(
        [*cli, *export[1:-1], bundle], capture_output=True, text=True, timeout=120, check=False
    )
    assert exported.returncode == 0, exported.stderr
    checked = subprocess.run(
        [*cli, "evidence", "verify", bundle, *verify[4:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1].startswith("verified: every check passed")
    assert verify[4:6] == ["--server", "demo-exchange"]  # the server's name, not the manifest's
    assert sum(arg == "--pin" for arg in verify) == 3
