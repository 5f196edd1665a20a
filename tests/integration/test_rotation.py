"""JPRS rotates its snapshot-signing key in band, between a real server and real agent processes.

The new key is refused until JPRS announces it in a snapshot signed by the old and the new key;
SECOM's agent catches up on that announcement though it only ever fetched the snapshot after it;
the report both parties co-sign names JPRS's new key; and afterwards a snapshot signed by the
old key alone is refused and nothing is stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from invsync.agent.config.settings import load_agent_config
from invsync.agent.daemon.cycle import Agent
from invsync.agent.daemon.freshness import PushReason
from invsync.agent.errors import TransportError
from invsync.agent.exchange import envelope
from invsync.agent.exchange.keys import SigningKey, load_signing_key
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, build_payload
from invsync.agent.report.body import parse_report_body, read_report_file, verify_report
from invsync.server.localfed import command
from tests.integration.conftest import Federation
from tests.integration.test_exchange import (
    _latest_reports,
    _refresh_every_cycle,
    _run_both_agents,
    _run_changed_then_peer,
)

pytestmark = pytest.mark.integration
PAIRING = "secom-jprs"


def _stored(work: Path) -> dict[int, tuple[bytes, set[str]]]:
    """JPRS's snapshots at the server: version -> (payload, signing key ids)."""
    with sqlite3.connect(work / "state" / "server.db") as db:
        rows = db.execute(
            "select version, payload, signatures from snapshots where party = 'jprs'"
        ).fetchall()
    return {v: (bytes(p), {s["keyid"] for s in json.loads(sigs)}) for v, p, sigs in rows}


def _next_jprs_snapshot(work: Path, signer: SigningKey) -> envelope.Envelope:
    """A well-formed next version of JPRS's chain, signed by `signer` alone."""
    stored = _stored(work)
    last = max(stored)
    now = datetime.now(UTC)
    payload = build_payload(
        party="jprs",
        pairing=PAIRING,
        role="subordinate",
        version=last + 1,
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        previous_digest=hashlib.sha256(stored[last][0]).digest(),
        records=[],
    )
    return envelope.sign(SNAPSHOT_PAYLOAD_TYPE, payload, [signer])


def _refused(fed: Federation, env: envelope.Envelope, rule: str, message: str) -> None:
    before = _stored(fed.work)
    client = fed.client("jprs")
    try:
        with pytest.raises(TransportError, match=re.escape(message)) as caught:
            client.push(env)
    finally:
        client.close()
    assert caught.value.rule == rule  # the server's trailing metadata, not its text
    assert _stored(fed.work) == before  # nothing written


def test_a_signing_key_rotation_announced_by_both_keys(federation: Federation) -> None:
    work = federation.work
    _run_both_agents(federation)
    old = load_signing_key(work / "keys" / "jprs.key")
    generated = subprocess.run(
        command("keys", "generate", "--out", str(work / "keys" / "jprs-2.key")),
        capture_output=True,
        text=True,
        check=True,
    )
    new = load_signing_key(work / "keys" / "jprs-2.key")
    assert new.keyid in generated.stdout

    _refused(
        federation,
        _next_jprs_snapshot(work, new),
        "untrusted-signer",
        "PERMISSION_DENIED: snapshot rejected [untrusted-signer]: no signature by a key pinned "
        f"for party 'jprs' (signed by: {new.keyid})",
    )

    config = work / "jprs.toml"
    config.write_text(
        config.read_text().replace("[server]", 'next_signing_key = "keys/jprs-2.key"\n\n[server]')
    )
    jprs = Agent(load_agent_config(config))
    try:
        jprs.collect()
        pairing = jprs.config.pairings[PAIRING]
        announced = jprs.sync(pairing)
        assert (announced.version, announced.reason) == (2, PushReason.ROTATION)
        assert jprs.push(pairing) == 3  # pushed again before SECOM's agent looked
    finally:
        jprs.close()
    stored = _stored(work)
    assert {v: keyids for v, (_, keyids) in stored.items()} == {
        1: {old.keyid},
        2: {old.keyid, new.keyid},
        3: {new.keyid},
    }

    outputs = _run_both_agents(federation)  # neither inventory changed: both co-sign v1/v3
    assert "jprs: secom-jprs unchanged since snapshot version 3" in outputs[1], outputs[1]
    env = read_report_file(_latest_reports(federation)[-1])
    assert verify_report(env).complete, verify_report(env).describe()
    body = parse_report_body(env.payload)
    assert (body.root.version, body.subordinate.version) == (1, 3)
    assert [s.keyid for s in body.signers if s.role == "subordinate"] == [new.keyid]
    with sqlite3.connect(work / "state" / "secom.db") as db:
        seen = db.execute("select party, pairing, version from peer_key_rotations").fetchall()
    assert seen == [("jprs", PAIRING, 2)]  # found by walking back from version 3

    _refused(
        federation,
        _next_jprs_snapshot(work, old),
        "retired-key",
        "PERMISSION_DENIED: snapshot rejected [retired-key]: version 4 of party 'jprs' in "
        f"pairing 'secom-jprs' is signed by key {old.keyid[:16]} alone, which the party "
        f"replaced with key {new.keyid[:16]} at version 2",
    )

    # The operator completes the rotation: the new key becomes agent.signing_key.
    text = config.read_text().replace('next_signing_key = "keys/jprs-2.key"\n', "")
    config.write_text(text.replace('"keys/jprs.key"', '"keys/jprs-2.key"'))
    _refresh_every_cycle(config)
    log = _run_changed_then_peer(federation, changed="jprs", peer="secom")
    assert "jprs: pushed secom-jprs snapshot version 4 (refresh before expiry)" in log
    assert _stored(work)[4][1] == {new.keyid}
    env = read_report_file(_latest_reports(federation)[-1])
    assert verify_report(env).complete, verify_report(env).describe()
    assert parse_report_body(env.payload).subordinate.version == 4
