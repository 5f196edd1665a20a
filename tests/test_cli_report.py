"""`invsync report verify` on real signed report files, built in-process without a network.

The report holds the real findings of the SECOM/JPRS demo data, signed by three generated keys
(the exchange server, SECOM as root, JPRS as subordinate) the way the server and agents sign.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner, Result

from invsync.agent.exchange import envelope
from invsync.agent.exchange.keys import SigningKey, generate, write_private_key
from invsync.agent.model.snapshot import Side
from invsync.agent.reconcile.runner import reconcile
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    Signer,
    SnapshotRef,
    build_report_body,
    write_report_file,
)
from invsync.agent.sources.registry import load_sources
from invsync.server.cli import invsync
from tests.paths import DEMO

AS_OF = datetime(2021, 3, 1, tzinfo=UTC)
KEYS = {"exchange": generate(), "secom": generate("ecdsa-p256"), "jprs": generate()}
ROLES = {"exchange": "server", "secom": "root", "jprs": "subordinate"}
ALL_PINS = [f"{name}={key.keyid}" for name, key in KEYS.items()]


def _body() -> bytes:
    secom = load_sources([str(DEMO / "secom_issuance_log.jsonl")], AS_OF)
    jprs = load_sources([str(DEMO / "jprs_ca_certificates.pem")], AS_OF)
    return build_report_body(
        pairing="secom-jprs",
        as_of=AS_OF,
        root=SnapshotRef("secom", "root", 1, "a" * 64),
        subordinate=SnapshotRef("jprs", "subordinate", 1, "b" * 64),
        findings=reconcile(Side("secom", secom), Side("jprs", jprs), AS_OF),
        signers=[Signer(ROLES[n], n, k.keyid, k.public.spki_der) for n, k in KEYS.items()],
    )


def _report(tmp_path: Path, signed_by: Iterable[str] = KEYS) -> Path:
    keys: list[SigningKey] = [KEYS[name] for name in signed_by]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "secom-jprs.report.json"
    write_report_file(path, envelope.sign(REPORT_PAYLOAD_TYPE, _body(), keys))
    return path


def _verify(path: Path, *pins: str) -> Result:
    args = ["report", "verify", str(path)]
    for pin in pins:
        args += ["--pin", pin]
    return CliRunner().invoke(invsync, args)


def _status_lines(result: Result) -> dict[str, str]:
    """Signer name -> the rest of its line after the key id prefix."""
    lines = {}
    for line in result.stdout.splitlines()[1:-1]:
        role, name, keyid, status = line.split(maxsplit=3)
        assert KEYS[name].keyid.startswith(keyid)
        assert ROLES[name] == role
        lines[name] = status
    return lines


def _tamper(path: Path) -> None:
    obj = json.loads(path.read_text())
    body = base64.b64decode(obj["payload"]).replace(
        b'"pairing":"secom-jprs"', b'"pairing":"secom-jpr5"'
    )
    obj["payload"] = base64.b64encode(body).decode()
    path.write_text(json.dumps(obj))


def test_a_report_signed_by_all_three_with_their_pinned_keys_verifies(tmp_path: Path) -> None:
    result = _verify(_report(tmp_path), *ALL_PINS)
    assert result.exit_code == 0
    assert result.stdout.startswith("report ")
    assert "(pairing secom-jprs, as of 2021-03-01T00:00:00Z)" in result.stdout.splitlines()[0]
    assert _status_lines(result) == {"exchange": "valid", "secom": "valid", "jprs": "valid"}
    assert result.stdout.endswith("complete: server valid, root valid, subordinate valid\n")


def test_without_pins_every_signer_is_unverified_and_the_run_fails(tmp_path: Path) -> None:
    # The keys a report lists about itself are never a trust anchor.
    result = _verify(_report(tmp_path))
    assert result.exit_code == 1
    expected = {name: f"unverified (no key pinned for {name})" for name in KEYS}
    assert _status_lines(result) == expected
    assert result.stdout.endswith(
        "INCOMPLETE: server unverified, root unverified, subordinate unverified\n"
    )
    assert "no key is pinned (--pin or --config): every signer is unverified" in result.stderr


def test_a_signer_left_unpinned_is_unverified_never_valid(tmp_path: Path) -> None:
    result = _verify(_report(tmp_path), *ALL_PINS[:2])
    assert result.exit_code == 1
    assert _status_lines(result) == {
        "exchange": "valid",
        "secom": "valid",
        "jprs": "unverified (no key pinned for jprs)",
    }
    assert result.stdout.endswith("INCOMPLETE: server valid, root valid, subordinate unverified\n")


def test_a_tampered_payload_invalidates_every_signature(tmp_path: Path) -> None:
    path = _report(tmp_path)
    _tamper(path)
    result = _verify(path, *ALL_PINS)
    assert result.exit_code == 1
    expected = "invalid (signature does not verify)"
    assert _status_lines(result) == {"exchange": expected, "secom": expected, "jprs": expected}
    assert "(pairing secom-jpr5," in result.stdout
    assert result.stdout.endswith("INCOMPLETE: server invalid, root invalid, subordinate invalid\n")


def test_a_missing_party_signature_is_absent(tmp_path: Path) -> None:
    result = _verify(_report(tmp_path, signed_by=["exchange", "secom"]), *ALL_PINS)
    assert result.exit_code == 1
    assert _status_lines(result) == {"exchange": "valid", "secom": "valid", "jprs": "absent"}
    assert result.stdout.endswith("INCOMPLETE: server valid, root valid, subordinate absent\n")


def test_a_pin_with_another_keyid_makes_that_signer_untrusted(tmp_path: Path) -> None:
    other = generate().keyid
    pins = [f"exchange={KEYS['exchange'].keyid}", f"secom={other}", f"jprs={KEYS['jprs'].keyid}"]
    result = _verify(_report(tmp_path), *pins)
    assert result.exit_code == 1
    assert _status_lines(result)["secom"] == f"untrusted (pinned key is {other})"
    assert _status_lines(result)["jprs"] == "valid"
    assert result.stdout.endswith("INCOMPLETE: server valid, root untrusted, subordinate valid\n")


def test_a_pin_without_equals_sign_is_a_usage_error(tmp_path: Path) -> None:
    result = _verify(_report(tmp_path), "secom")
    assert result.exit_code == 2
    assert "Invalid value for --pin: 'secom': expected NAME=KEYID" in result.output


def _subprocess(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invsync.server.cli", "report", "verify", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_file_that_is_not_json_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.report.json"
    path.write_text("this is not a report\n")
    result = _subprocess(path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"error: report file {path}: not valid UTF-8 JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_file_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.report.json"
    result = _subprocess(path)
    assert result.returncode == 2
    assert f"error: report file {path}: cannot read (No such file or directory)" in result.stderr


def test_an_envelope_without_signatures_field_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bare.report.json"
    path.write_text(json.dumps({"payloadType": REPORT_PAYLOAD_TYPE, "payload": ""}))
    result = _subprocess(path)
    assert result.returncode == 2
    assert f"report file {path}: envelope: field 'signatures' missing or not a list" in (
        result.stderr
    )


def test_report_verify_has_help() -> None:
    result = CliRunner().invoke(invsync, ["report", "verify", "--help"])
    assert result.exit_code == 0
    assert "--pin NAME=KEYID" in result.stdout
    assert "--config FILE" in result.stdout
    text = " ".join(result.stdout.split())
    assert (
        "Exit status: 0 only if, in every file, the server and both parties signed with pinned "
        "keys and every signature is valid; 1 otherwise; 2 if a file cannot be read or an "
        "option is wrong."
    ) in text
    assert 'a valid signature by a key that is not pinned is "unverified"' in text


def test_several_files_are_each_named_and_one_incomplete_report_fails_the_run(
    tmp_path: Path,
) -> None:
    complete = _report(tmp_path / "a")
    incomplete = _report(tmp_path / "b", signed_by=["exchange", "secom"])
    pins = [arg for pin in ALL_PINS for arg in ("--pin", pin)]
    result = CliRunner().invoke(
        invsync, ["report", "verify", str(complete), str(incomplete), *pins]
    )
    assert result.exit_code == 1
    assert f"{complete}:\nreport " in result.stdout
    assert f"{incomplete}:\nreport " in result.stdout
    assert result.stdout.count("complete: server valid, root valid, subordinate valid") == 1
    assert "INCOMPLETE: server valid, root valid, subordinate absent" in result.stdout


def test_several_complete_files_pass(tmp_path: Path) -> None:
    files = [str(_report(tmp_path / name)) for name in ("a", "b")]
    pins = [arg for pin in ALL_PINS for arg in ("--pin", pin)]
    result = CliRunner().invoke(invsync, ["report", "verify", *files, *pins])
    assert result.exit_code == 0, result.stdout
    assert result.stdout.count("complete: server valid, root valid, subordinate valid") == 2


def _agent_config(fed: Path, party: str) -> Path:
    """`party`'s configuration of the demo federation, its own key swapped for this file's."""
    keys = {"secom": fed / "keys" / "secom.key", "jprs": fed / "keys" / "jprs.key"}
    write_private_key(keys["secom"].with_name("test-secom.key"), KEYS["secom"])
    config = fed / f"{party}.toml"
    config.write_text(config.read_text().replace('"keys/secom.key"', '"keys/test-secom.key"'))
    for name, public in (("server", "exchange"), ("jprs", "jprs")):
        (fed / "keys" / f"{name}.pub").write_bytes(KEYS[public].public.public_pem())
    return config


def test_config_takes_the_pins_from_an_agent_configuration(fed: Path, tmp_path: Path) -> None:
    # secom's agent pins the server's key (for the server role, whatever its name), its own
    # signing key and jprs's: all three signers are valid, and the run passes.
    config = _agent_config(fed, "secom")
    result = CliRunner().invoke(
        invsync, ["report", "verify", str(_report(tmp_path)), "--config", str(config)]
    )
    assert result.exit_code == 0, result.output
    assert _status_lines(result) == {"exchange": "valid", "secom": "valid", "jprs": "valid"}
    assert result.stdout.endswith("complete: server valid, root valid, subordinate valid\n")


def test_config_pins_refuse_a_report_signed_by_keys_it_does_not_pin(
    fed: Path, tmp_path: Path
) -> None:
    config = _agent_config(fed, "secom")
    (fed / "keys" / "jprs.pub").write_bytes(generate().public.public_pem())  # another jprs key
    result = CliRunner().invoke(
        invsync, ["report", "verify", str(_report(tmp_path)), "--config", str(config)]
    )
    assert result.exit_code == 1
    assert _status_lines(result)["jprs"].startswith("untrusted (pinned key is ")
    assert result.stdout.endswith("INCOMPLETE: server valid, root valid, subordinate untrusted\n")


def test_show_and_list_judge_signatures_with_the_pins(tmp_path: Path) -> None:
    path = _report(tmp_path)
    pins = [arg for pin in ALL_PINS for arg in ("--pin", pin)]
    listed = CliRunner().invoke(invsync, ["report", "list", "--dir", str(tmp_path)])
    assert listed.stdout.splitlines()[0].endswith("  incomplete")
    pinned = CliRunner().invoke(invsync, ["report", "list", "--dir", str(tmp_path), *pins])
    assert pinned.stdout.splitlines()[0].endswith("  complete")
    shows = [
        (
            "markdown",
            "| unverified (no key pinned for jprs) |",
            "Signatures complete: server valid",
        ),
        ("html", ">unverified (no key pinned for jprs)</span>", "<strong>Signatures complete<"),
        ("text", "unverified (no key pinned for jprs)", "\ncomplete: server valid, root valid"),
    ]
    for fmt, unpinned, pinned_verdict in shows:
        args = ["report", "show", str(path), "--dir", str(tmp_path), "--format"]
        shown = CliRunner().invoke(invsync, [*args, fmt]).stdout
        assert unpinned in shown, fmt
        assert "valid (" not in shown and " valid |" not in shown, fmt
        trusted = CliRunner().invoke(invsync, [*args, fmt, *pins]).stdout
        assert "unverified (" not in trusted, fmt
        assert pinned_verdict in trusted, fmt


def test_diff_says_how_the_pins_judge_both_reports(tmp_path: Path) -> None:
    path = _report(tmp_path)
    result = CliRunner().invoke(
        invsync, ["report", "diff", str(path), str(path), "--pin", ALL_PINS[0]]
    )
    lines = result.stdout.splitlines()
    verdict = "INCOMPLETE: server valid, root unverified, subordinate unverified"
    assert lines[0].endswith(f": {verdict}") and lines[0].startswith("old ")
    assert lines[1].endswith(f": {verdict}") and lines[1].startswith("new ")
