"""Evidence over real processes: after both agents' full cycle against the real server over
mutual TLS, a party exports a bundle with `invsync evidence export --config`, and
`invsync evidence verify`, offline with the three key ids pinned, accepts it."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from invsync.agent.exchange.delta import read_parts
from invsync.agent.exchange.keys import load_verify_key
from invsync.server.localfed import command
from invsync.v1 import invsync_pb2 as pb
from tests.integration.conftest import Federation
from tests.integration.test_exchange import _run_both_agents, _run_changed_then_peer

pytestmark = pytest.mark.integration

SERVER = "demo-exchange"  # server.name in localfed's server.toml


def _invsync(fed: Federation, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), cwd=fed.work, capture_output=True, text=True, timeout=120, check=False
    )


def _pins(fed: Federation) -> list[str]:
    keyids = {
        n: load_verify_key(fed.work / "keys" / f"{n}.pub").keyid
        for n in ("server", "secom", "jprs")
    }
    names = {"server": SERVER, "secom": "secom", "jprs": "jprs"}
    return [arg for key, keyid in keyids.items() for arg in ("--pin", f"{names[key]}={keyid}")]


def test_a_partys_export_after_a_full_cycle_verifies_with_the_three_keys_pinned(
    federation: Federation,
) -> None:
    _run_both_agents(federation)
    bundle = federation.work / "evidence"
    exported = _invsync(
        federation, "evidence", "export", "--config", "secom.toml", "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith(f"wrote {bundle}: ")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["server"] == {"name": SERVER, "origin": SERVER}

    summary = federation.work / "summary"
    verified = _invsync(
        federation,
        "evidence",
        "verify",
        str(bundle),
        "--server",
        SERVER,
        *_pins(federation),
        "--summary-dir",
        str(summary),
    )
    assert verified.returncode == 0, verified.stderr
    lines = verified.stdout.splitlines()
    assert lines[0] == "pairing secom-jprs"
    kinds = [line[9:21].strip() for line in lines[1:] if line[:7].strip().isdigit()]
    assert kinds.count("snapshot") == kinds.count("receipt") == 2
    assert kinds.count("co-signature") >= 2
    assert lines[-1].startswith("verified: every check passed")
    assert (summary / "evidence.html").read_text().startswith("<!DOCTYPE html>")

    unpinned = _invsync(
        federation, "evidence", "verify", str(bundle), "--server", SERVER, *_pins(federation)[:4]
    )
    assert unpinned.returncode == 1
    assert "no key is pinned for the party 'jprs'" in unpinned.stderr


def test_a_log_of_delta_snapshots_verifies_offline(federation: Federation) -> None:
    """Issue 13: after its first snapshot a party pushes deltas; the verifier rebuilds each
    version on the one before it in the log and checks it against its signed header."""
    _run_both_agents(federation)
    log = federation.work / "data" / "secom_issuance_log.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[1:]) + "\n")  # SECOM drops a certificate
    _run_changed_then_peer(federation, changed="secom", peer="jprs")
    bundle = federation.work / "evidence"
    exported = _invsync(
        federation, "evidence", "export", "--config", "jprs.toml", "--out", str(bundle)
    )
    assert exported.returncode == 0, exported.stderr
    snapshots = _snapshot_entries(bundle)
    assert snapshots[("secom", 1)] == (False, 0)  # full
    assert snapshots[("secom", 2)] == (True, 1)  # a delta: one removal, nothing else
    verified = _invsync(
        federation, "evidence", "verify", str(bundle), "--server", SERVER, *_pins(federation)
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.splitlines()[-1].startswith("verified: every check passed")


def _snapshot_entries(bundle: Path) -> dict[tuple[str, int], tuple[bool, int]]:
    """(party, version) -> (is a delta, how many records it removes), for each SNAPSHOT entry."""
    found = {}
    for item in json.loads((bundle / "entries.json").read_text())["entries"]:
        entry = pb.LogEntry.FromString(base64.b64decode(item["leaf"]))
        if entry.kind == pb.LOG_ENTRY_KIND_SNAPSHOT:
            payload = base64.b64decode(json.loads(entry.envelope)["payload"])
            parts = read_parts(payload)
            found[(entry.party, entry.version)] = (parts.delta, len(parts.removed))
    return found


def test_an_export_into_a_non_empty_directory_is_refused(federation: Federation) -> None:
    taken = federation.work / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine\n")
    result = _invsync(
        federation, "evidence", "export", "--config", "jprs.toml", "--out", str(taken)
    )
    assert result.returncode == 2
    assert f"error: {taken} exists and is not an empty directory: choose a new --out" in (
        result.stderr
    )
    assert (taken / "notes.txt").read_text() == "mine\n"
