"""docs/operations.md's first pairing, run as written: every shell and TOML block of section 2.

The guide says every command was run as written; this test keeps it so. The blocks are taken
from the guide in order and run by bash in an empty directory with the installed `invsync` on
PATH. Only what a person does by hand is added: the same 2.1 block again for JPRS, the three
terminals of 2.6 as background jobs, a wait until the daemons finish their first cycle, and
stopping everything. The guide's port 7443 becomes a free one, so parallel runs do not collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.ports import free_port
from tests.paths import ROOT

pytestmark = pytest.mark.integration
GUIDE = ROOT / "docs" / "operations.md"
COMPLETE = "complete: server valid, root valid, subordinate valid"
# Bash that waits up to a minute for FILE to contain TEXT (at least N times), printing FILE if
# it never does.
WAIT = """wait_for() {
  for _ in $(seq 600); do [ "$(grep -c "$2" "$1")" -ge "${3:-1}" ] && return 0; sleep 0.1; done
  cat "$1" >&2; return 1
}
RELOADS=0
STARTS=0
"""
# Lines that find the server by its command line: the script's own command line holds the
# same words, so the script runs them on the server it started ($SERVER) instead.
SIGHUP_SERVER = "pkill -HUP -f 'invsync server run --config server.toml'"
STOP_SERVER = "pkill -TERM -f 'invsync server run --config server.toml'"
AWAIT_SERVER_EXIT = (
    "while pgrep -f 'invsync server run --config server.toml' > /dev/null; do sleep 0.2; done"
)
# What an agent prints once its cycle has pushed, or found nothing to push (grep BRE).
PUSHED = ": pushed \\|: [a-z-]* unchanged since snapshot"


def _section() -> str:
    text = GUIDE.read_text()
    return text[text.index("## 2. First pairing") : text.index("### 2.11")]


def _step(kind: str, body: str, name: str | None) -> str:
    """One block of the guide as the script runs it."""
    if kind == "toml":
        assert name is not None, body
        return f"cat > {name} <<'EOF_TOML'\n{body}EOF_TOML\n"
    if body.startswith("p=secom;"):  # 2.1: "and by JPRS in jprs/ with p=jprs"
        return body + body.replace("p=secom;", "p=jprs;", 1)
    lines: list[str] = []
    daemons: list[str] = []
    started = ""  # the .once file of the --once cycle started last in this block
    for line in body.splitlines():
        if line == SIGHUP_SERVER:  # this server, not another test's; and wait for its reload
            lines += ['kill -HUP "$SERVER"', "RELOADS=$((RELOADS + 1))"]
            lines.append('wait_for server.out "reloaded server.toml: " "$RELOADS"')
        elif line == STOP_SERVER:
            lines.append('kill -TERM "$SERVER"')
        elif line == AWAIT_SERVER_EXIT:
            lines.append('wait "$SERVER"')
        elif " server run " in line:  # a terminal of its own (started again in 2.9)
            lines += [f"{line} >> server.out 2>&1 &", "SERVER=$!", "STARTS=$((STARTS + 1))"]
            lines.append('wait_for server.out " listening on " "$STARTS"')
        elif line.endswith("--once)"):  # a terminal each, the next once the last has pushed
            out = f"{line.split()[1]}.once"
            if started:  # as the guide says: the other party signs the new report, not the last
                lines.append(f'wait_for {started} "{PUSHED}" "$((SEEN + 1))"')
            lines += [f'touch {out}; SEEN=$(grep -c "{PUSHED}" {out} || true)']
            lines += [f"{line} >> {out} 2>&1 &", "ONCE+=($!)"]
            started = out
        elif line.endswith(") &"):  # the daemons
            party = line.split()[1]
            lines += [f"{line[:-2]} > {party}.daemon 2>&1 &", "DAEMONS+=($!)"]
            daemons.append(party)
        else:
            lines.append(line)
    if any("--once)" in line for line in body.splitlines()):
        # Exit 1 is a complete report with error findings, as the guide says the demo's has.
        lines += ['for pid in "${ONCE[@]}"; do wait "$pid" || [ $? -eq 1 ]; done', "ONCE=()"]
    if daemons:  # each daemon's first cycle needs the other's snapshot: start all, then wait
        lines += [f"wait_for {party}.daemon 'subordinate valid)'" for party in daemons]
        lines += ['kill -TERM "${DAEMONS[@]}"', 'for pid in "${DAEMONS[@]}"; do wait "$pid"; done']
    return "\n".join(lines) + "\n"


def _script(port: int) -> str:
    section = _section()
    steps = [WAIT, "ONCE=(); DAEMONS=()\n"]
    for match in re.finditer(
        r"(?:`([a-z]+/[a-z]+\.toml)`:\n\n)?```(sh|toml)\n(.*?)```", section, re.S
    ):
        name, kind, body = match.groups()
        steps.append(_step(kind, body, name))
    steps.append('kill -TERM "$SERVER"; wait "$SERVER"\n')
    return "".join(steps).replace("7443", str(port))


def test_the_first_pairing_walkthrough_runs_as_written(tmp_path: Path) -> None:
    script = _script(free_port())
    assert "openssl" not in script  # invsync's own commands only
    for tool in ("bash", "sqlite3"):  # the guide's own (2.10 backs a database up with sqlite3)
        assert shutil.which(tool), f"docs/operations.md runs {tool}: install it"
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "invsync").exists(), "the installed invsync must be beside the test's python"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, PATH=path, PYTHONUNBUFFERED="1")  # daemons' lines as they come
    # A session of its own: if a step fails, the server and daemons it started in the
    # background are killed with the whole group, not left running.
    proc = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    pilot = tmp_path / "pilot"
    logs = {p.name: p.read_text() for p in pilot.glob("*.*") if p.suffix in (".once", ".daemon")}
    assert proc.returncode == 0, (stdout, stderr, logs)
    for config in ("exchange/server.toml", "secom/agent.toml", "jprs/agent.toml"):
        assert f"{config}: ok (" in stdout
    for party in ("secom", "jprs"):
        assert f"{party}: pushed secom-jprs snapshot version 1 (first" in logs[f"{party}.once"]
        daemon = logs[f"{party}.daemon"]
        assert f"{party}: secom-jprs unchanged since snapshot version 1 (" in daemon, daemon
        assert daemon.rstrip().endswith(f"{party}: stopped"), daemon
    # Both `report verify` runs, with the agent configuration's pins and with every signer
    # pinned by hand, on the one report: the daemons found the inventories unchanged and
    # settled on the report of the --once cycles. Neither trusts the keys the report lists.
    assert stdout.count(COMPLETE) == 2, stdout
    assert "unverified" not in stdout and "untrusted" not in stdout, stdout
    assert "invsync report verify --config secom/agent.toml" in _section()
    reports = {p.name.split("-2021")[0] for p in (pilot / "secom").glob("reports/*.json")}
    assert reports == {"secom-jprs", "secom-nii"}
    _check_nii_joined_and_left(pilot, stdout, logs)
    _check_rotations_and_restore(pilot, logs)
    # The auditor's bundle verified (exit 0 under `set -e`), every rotation in its timeline.
    assert "the server exchange rotated to server key " in stdout, stdout
    assert "key rotation  -                     secom rotated to key " in stdout, stdout
    assert "PERMISSION_DENIED: TLS client certificate CN='nii' is not the tls_identity" in stderr
    # Each TLS key is where it was made (issue 14), and the CAs' stayed with the operator; the
    # renewed ones too (tls-2/, tls-3/), each private to its host.
    for host, name in (("exchange", "localhost"), ("secom", "secom"), ("jprs", "jprs")):
        key = pilot / host / "tls" / f"{name}.key"
        assert oct(key.stat().st_mode & 0o777) == "0o600", key
    keys = sorted(str(p.relative_to(pilot)) for p in pilot.rglob("*.key"))
    assert [k for k in keys if "/tls/" in k or k.endswith("ca.key")] == [
        "exchange/ca-2/ca.key",
        "exchange/ca/ca.key",
        "exchange/tls/localhost.key",
        "jprs/tls/jprs.key",
        "nii/tls/nii.key",
        "secom/tls/secom.key",
    ]
    for renewed in [k for k in keys if "/tls-" in k]:
        host, _, name = renewed.partition("/")
        assert name.rsplit("/", 1)[1] == ("localhost.key" if host == "exchange" else f"{host}.key")
        assert oct((pilot / renewed).stat().st_mode & 0o777) == "0o600", renewed


def _check_rotations_and_restore(pilot: Path, logs: dict[str, str]) -> None:
    """2.9 and 2.10: SECOM's key announced and switched to; JPRS's TLS certificate renewed and
    the old one revoked, read by the running server; JPRS's database restored from a backup
    older than the exchange's record, and its chain continued from the log."""
    secom, jprs = logs["secom.once"], logs["jprs.once"]
    assert "secom: pushed secom-jprs snapshot version 2 (announces a new signing key)" in secom
    followed = "the exchange server exchange rotated its signing key to "
    assert followed in secom and followed in jprs
    # Started in 2.6, again for its new signing key and TLS certificate, twice for the new CA.
    assert (pilot / "server.out").read_text().count(" listening on ") == 4
    server_toml = (pilot / "exchange" / "server.toml").read_text()
    assert 'cert = "tls-3/localhost.crt"' in server_toml and "client_crl" not in server_toml
    new_ca = (pilot / "exchange" / "ca-2" / "ca.pem").read_bytes()
    for trusted in ("exchange/tls/ca.pem", "secom/tls/ca.pem", "jprs/tls/ca.pem"):
        assert (pilot / trusted).read_bytes() == new_ca  # the old CA dropped everywhere
    for party in ("secom", "jprs"):
        issuer = x509.load_pem_x509_certificate(new_ca).subject
        cert = x509.load_pem_x509_certificate(
            (pilot / party / "tls-3" / f"{party}.crt").read_bytes()
        )
        assert (
            cert.issuer == issuer
            and f'"tls-3/{party}.crt"' in (pilot / party / "agent.toml").read_text()
        )
    assert (pilot / "bundle" / "keys.json").exists()
    assert not (pilot / "secom" / "keys" / "secom.key").exists()
    server = (pilot / "server.out").read_text()
    assert "reloaded server.toml: tls.client_crl; 1 revoked client certificates" in server
    assert "jprs: pushed secom-jprs snapshot version 2 (content changed)" in jprs
    restored = "jprs: pushed secom-jprs snapshot version 3 (continues after our latest snapshot"
    assert restored in jprs, jprs
    # The last cycle of each ends on one report all three signed.
    for log in (secom, jprs):
        last = [line for line in log.splitlines() if ": report reports/" in line][-1]
        assert last.endswith("(server valid, root valid, subordinate valid)"), log
    assert secom.split(": report reports/")[-1][:50] == jprs.split(": report reports/")[-1][:50]


def _check_nii_joined_and_left(pilot: Path, stdout: str, logs: dict[str, str]) -> None:
    """2.8: the running server took NII in and let it go again; NII's one cycle was reported
    and signed by all three; its call after leaving was refused by its TLS identity."""
    server = (pilot / "server.out").read_text()
    assert "reloaded server.toml: parties +nii; pairings +secom-nii; 0 revoked" in server
    assert "reloaded server.toml: parties -nii; pairings -secom-nii; 0 revoked" in server
    assert "exchange/server.toml: ok (server config 'exchange', 3 parties, 2 pairings)" in stdout
    assert "secom/agent.toml: ok (agent config for party secom, 2 pairings)" in stdout
    nii = logs["nii.once"]
    assert "nii: collected 16 certificates" in nii, nii
    assert "nii: pushed secom-nii snapshot version 1 (first snapshot)" in nii, nii
    assert "(server valid, root valid, subordinate valid)" in nii, nii
    assert "secom: pushed secom-nii snapshot version 1 (first snapshot)" in logs["secom.once"]
    assert "nii: exit status 3" in stdout


def test_no_step_of_the_walkthrough_moves_a_private_key_between_hosts() -> None:
    """Copies between the three hosts' directories carry public files only: signing public keys
    (.key.pub), requests, certificates, data. A private key (.key) named in a copy fails this."""
    copies = [
        line
        for block in re.findall(r"```sh\n(.*?)```", _section(), re.S)
        for line in block.splitlines()
        if re.search(r"\b(cp|mv|scp|rsync)\b", line)
    ]
    assert any("requests/" in line for line in copies), copies  # the requests are copied
    for line in copies:
        for word in line.split():
            assert not word.endswith((".key", ".key*", "/*")), line
