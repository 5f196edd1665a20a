"""Logs of a real cycle: JSON lines off a terminal, with the structured fields, and no key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from invsync.agent.cli.entry import EXIT_FINDINGS
from invsync.server.localfed import command
from tests.integration.conftest import Federation

pytestmark = pytest.mark.integration


def _key_material(work: Path) -> list[str]:
    """Every base64 body line of every private key of the federation (signing and TLS)."""
    lines = []
    for path in [*(work / "keys").glob("*.key"), *(work / "tls").glob("*.key")]:
        text = path.read_text()
        assert "PRIVATE KEY" in text, path
        lines += [line for line in text.splitlines() if line and not line.startswith("-----")]
    return lines


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_a_cycle_logs_json_lines_with_fields_and_never_a_key(federation: Federation) -> None:
    # Both at once: each waits for the report that needs the other's snapshot.
    procs = [
        subprocess.Popen(
            command("agent", "run", "--config", str(federation.work / f"{party}.toml"), "--once"),
            cwd=federation.work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for party in ("secom", "jprs")
    ]
    outputs = [proc.communicate(timeout=120)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [EXIT_FINDINGS, EXIT_FINDINGS], outputs
    secom = _json_lines(outputs[0])
    assert secom and all(line.get("party") == "secom" for line in secom), outputs[0]
    cycle = [line for line in secom if "collected" not in str(line["message"])]
    assert cycle and all(
        (line.get("pairing"), line.get("peer")) == ("secom-jprs", "jprs") for line in cycle
    ), outputs[0]
    pushed = [line for line in secom if "pushed" in str(line["message"])]
    assert pushed, outputs[0]
    assert {k: pushed[0][k] for k in ("party", "pairing", "version", "level")} == {
        "party": "secom",
        "pairing": "secom-jprs",
        "version": 1,
        "level": "INFO",
    }
    server_log = (federation.work / "logs" / "server.log").read_text()
    accepted = [line for line in _json_lines(server_log) if "accepted" in str(line["message"])]
    assert {(line["party"], line["version"]) for line in accepted} == {("secom", 1), ("jprs", 1)}
    everything = "\n".join([*outputs, server_log])
    assert "PRIVATE KEY" not in everything
    for line in _key_material(federation.work):
        assert line not in everything
