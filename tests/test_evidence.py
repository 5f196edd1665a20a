"""`invsync evidence export` and `invsync evidence verify` on a real exchange history.

The history (tests/evidence_rig.py) is made by the in-process exchange over its SQLite store,
with real keys and the real JPRS certificates: two parties, several snapshot versions, a key
rotation, reports and co-signatures. Each tampered bundle below is what an attacker could hand an
auditor: one who edits files (and rewrites the manifest, which nobody signs), or a dishonest
exchange operator who re-signs every checkpoint with the server's key. Each must fail, naming the
check and the entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from invsync.agent.errors import InvsyncError, ReportError
from invsync.agent.evidence.bundle import Scope
from invsync.agent.evidence.directory import write_bundle
from invsync.agent.evidence.export import export_bundle
from invsync.agent.evidence.failures import BundleError, CheckFailed, ExportError
from invsync.agent.evidence.summary import render_summary
from invsync.agent.evidence.verify import verify_bundle
from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import tlog
from invsync.agent.exchange.chain_reset import ChainReset, sign_chain_reset
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.envelope import sign
from invsync.agent.exchange.keys import generate, write_private_key
from invsync.agent.exchange.log_entry import MalformedLogEntry, logged_envelope
from invsync.agent.exchange.receipt import receipt_for, sign_receipt
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, sign_snapshot
from invsync.agent.model.record import CertRecord
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    canonical_json,
    parse_report_body,
    report_id,
)
from invsync.server.cli import invsync
from invsync.v1 import invsync_pb2 as pb
from tests.evidence_rig import (
    History,
    MemoryLog,
    PartyLog,
    envelope_of,
    export_rig,
    forge,
    history,
    plan,
    snapshot_signed_by,
    with_envelope,
)
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, Rig, payload

NEW_JPRS = generate()  # the key jprs rotates to at version 2, announced in entry 10
# The history's entries: 0 secom v1, 3 jprs v1, 8 jprs v2 (announces NEW_JPRS, entry 10),
# 14 jprs v3 (signed by NEW_JPRS alone), 19 secom v2; reports at 2, 5, 11, 16, 21.
SIZE = 22


@pytest.fixture
def logged(rig: Rig, records: list[CertRecord]) -> History:
    return history(rig, records, NEW_JPRS)


@pytest.fixture
def bundle(rig: Rig, logged: History, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    export_rig(rig, out)
    return out


def pins(keys: Keys, *names: str, **keyids: str) -> list[str]:
    """--pin options: each of `names` with its own key, and `keyids` as given."""
    ids = {"secom": keys.secom.keyid, "jprs": keys.jprs.keyid, SERVER: keys.server.keyid}
    chosen = {name: ids[name] for name in names or ids} | keyids
    return [arg for name, keyid in chosen.items() for arg in ("--pin", f"{name}={keyid}")]


def verify(path: Path, *args: str) -> Result:
    return CliRunner().invoke(invsync, ["evidence", "verify", str(path), "--server", SERVER, *args])


def failed(result: Result, message: str) -> None:
    """The run exited 1 with `message` as the first line of its diagnostics, and no timeline."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == f"error: {message}"
    assert result.stderr.splitlines()[1].startswith("hint: Nothing in this bundle should be")


def redigest(path: Path) -> None:
    """Rewrite the manifest over the files as they now are: nobody signs it."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"] = {
        p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }
    (path / "manifest.json").write_text(json.dumps(manifest))


def edit_entries(path: Path, edit: Callable[[list[dict[str, object]]], object]) -> None:
    data = json.loads((path / "entries.json").read_text())
    edit(data["entries"])
    (path / "entries.json").write_text(json.dumps(data))
    redigest(path)


def leaves(rig: Rig) -> list[bytes]:
    return rig.store.log_entries(0, rig.store.log_size(), 1 << 30)


# --- a bundle that verifies --------------------------------------------------------------------


def test_a_bundle_verifies_with_the_three_pins_and_prints_each_pairings_timeline(
    bundle: Path, keys: Keys
) -> None:
    result = verify(bundle, *pins(keys))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "pairing secom-jprs"
    kinds = [line[9:21].strip() for line in lines[1:] if line[:7].strip().isdigit()]
    assert kinds == [
        *("snapshot", "receipt", "report"),
        *("snapshot", "receipt", "report", "co-signature", "co-signature"),
        *("snapshot", "receipt", "key rotation", "report", "co-signature", "co-signature"),
        *("snapshot", "receipt", "report", "co-signature", "co-signature"),
        *("snapshot", "receipt", "report"),
    ]
    rotation = f"jprs rotated to key {NEW_JPRS.keyid[:16]} at v2 (retired {keys.jprs.keyid[:16]})"
    assert f"     10  key rotation  -                     {rotation}" in lines
    assert any(
        line.startswith("         resolved error   missing-at-subordinate") for line in lines
    )
    signed = [line.strip() for line in lines if line.startswith("         signed")]
    everyone = "signed   server valid, root secom valid, subordinate jprs valid"
    nobody = "signed   server valid, root secom absent, subordinate jprs absent"
    assert signed == [nobody, everyone, everyone, everyone, nobody]
    assert lines[-2:] == [
        "log test-exchange: 22 entries, 22 in the bundle (all pairings), 0 withheld",
        "verified: every check passed, with 2 reports not signed by every party",
    ]


def test_the_bundle_holds_the_log_as_served_with_checkpoints_proofs_and_keys(
    rig: Rig, bundle: Path, keys: Keys
) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "invsync-evidence/1"
    assert manifest["server"] == {"name": SERVER, "origin": SERVER}
    assert manifest["scope"] == {"kind": "all"}
    assert manifest["created_at"] == "2021-03-01T12:00:00Z"
    checkpoints = [f"checkpoints/{n:06d}.note" for n in range(1, SIZE + 1)]
    files = ["entries.json", "keys.json", "proofs/consistency.json", "proofs/inclusion.json"]
    assert sorted(manifest["files"]) == sorted([*checkpoints, *files])
    entries = json.loads((bundle / "entries.json").read_text())["entries"]
    assert [e["index"] for e in entries] == list(range(SIZE))
    assert [base64.b64decode(e["leaf"]) for e in entries] == leaves(rig)
    assert (bundle / checkpoints[-1]).read_bytes() == rig.store.checkpoint()
    consistency = json.loads((bundle / "proofs/consistency.json").read_text())["proofs"]
    assert [(p["first"], p["second"]) for p in consistency] == [(n, n + 1) for n in range(1, SIZE)]
    inclusion = json.loads((bundle / "proofs/inclusion.json").read_text())
    assert (inclusion["tree_size"], len(inclusion["proofs"])) == (SIZE, SIZE)
    held = json.loads((bundle / "keys.json").read_text())
    assert [k["keyid"] for k in held["server"]] == [keys.server.keyid]
    assert [k["keyid"] for k in held["parties"]["jprs"]] == [keys.jprs.keyid, NEW_JPRS.keyid]
    assert held["rotations"] == [
        {
            "party": "jprs",
            "pairing": PAIRING,
            "version": 2,
            "entry": 10,
            "new_key": NEW_JPRS.keyid,
            "old_keys": [keys.jprs.keyid],
        }
    ]


def test_the_summaries_for_an_auditor_are_written_and_escape_every_value(
    bundle: Path, keys: Keys, tmp_path: Path
) -> None:
    result = verify(bundle, *pins(keys), "--summary-dir", str(tmp_path / "summary"))
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "summary" / "evidence.md").read_text()
    html = (tmp_path / "summary" / "evidence.html").read_text()
    assert "## Pairing secom-jprs" in markdown
    assert "5 snapshots, 5 reports, 6 co-signatures, 1 key rotations." in markdown
    assert f"| {keys.server.keyid} |" in markdown
    assert "<h2>Pairing secom-jprs</h2>" in html
    assert f"<code>{keys.jprs.keyid}</code>" in html
    hostile = "<b>x</b>|`y`"
    verified = verify_bundle(
        bundle, {name: frozenset([k]) for name, k in _ids(keys).items()}, SERVER
    )
    shown = replace(verified, bundle=replace(verified.bundle, server=hostile))
    assert "&lt;b&gt;x&lt;/b&gt;|`y`" in render_summary(shown, "html")
    assert "<b>x" not in render_summary(shown, "html")
    assert "# Evidence bundle of \\<b\\>x\\</b\\>\\|\\`y\\`" in render_summary(shown, "markdown")


def _ids(keys: Keys) -> dict[str, str]:
    return {SERVER: keys.server.keyid, "secom": keys.secom.keyid, "jprs": keys.jprs.keyid}


def test_a_party_exports_its_pairings_and_gets_only_leaf_hashes_of_the_others(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    source = PartyLog(rig, "jprs")
    exported = plan(rig, Scope(party="jprs"), every_checkpoint=False)
    write_bundle(export_bundle(source, exported), tmp_path / "jprs")
    manifest = json.loads((tmp_path / "jprs" / "manifest.json").read_text())
    assert manifest["scope"] == {"kind": "party", "party": "jprs"}
    entries = json.loads((tmp_path / "jprs" / "entries.json").read_text())["entries"]
    assert ["leaf" in e for e in entries] == [True] * SIZE + [False] * 3
    assert len(list((tmp_path / "jprs" / "checkpoints").iterdir())) == SIZE + 1
    result = verify(tmp_path / "jprs", *pins(keys))
    assert result.exit_code == 0, result.output
    assert (
        "log test-exchange: 25 entries, 22 in the bundle (pairings of party jprs), "
        "3 withheld (other pairings' entries)"
    ) in result.stdout
    assert "secom-x" not in result.stdout


def test_a_party_of_two_pairings_must_pin_every_party_it_holds_entries_of(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    exported = plan(rig)
    party_keys = {**exported.party_keys, "stranger": (keys.stranger.public,)}
    exported = replace(exported, party_keys=party_keys)
    write_bundle(export_bundle(PartyLog(rig, "secom"), exported), tmp_path / "secom")
    message = "signature check failed at entry 22: no key is pinned for the party 'stranger'"
    failed(verify(tmp_path / "secom", *pins(keys)), f"{message} (pass --pin stranger=KEYID)")
    both = verify(tmp_path / "secom", *pins(keys, stranger=keys.stranger.keyid))
    assert both.exit_code == 0, both.output
    assert "pairing secom-x" in both.stdout


def test_the_servers_export_of_one_pairing_keeps_the_others_as_leaf_hashes(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    export_rig(rig, tmp_path / "one", Scope(PAIRING))
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["scope"] == {"kind": "pairing", "pairing": PAIRING}
    entries = json.loads((tmp_path / "one" / "entries.json").read_text())["entries"]
    assert ["leaf" in e for e in entries] == [True] * SIZE + [False] * 3
    hashes = [base64.b64decode(e["leaf_hash"]) for e in entries[SIZE:]]
    assert hashes == rig.store.leaf_hashes(SIZE + 3)[SIZE:]
    result = verify(tmp_path / "one", *pins(keys))
    assert result.exit_code == 0, result.output
    assert "25 entries, 22 in the bundle (pairing secom-jprs), 3 withheld (other pairings' " in (
        result.stdout
    )


def _stranger_pushes(rig: Rig, records: list[CertRecord]) -> None:
    """A snapshot of `secom-x` by its subordinate: three entries no jprs may read."""
    _second_pairing(rig)
    data = payload(records, "stranger", pairing="secom-x", role=SUBORDINATE)
    rig.push(sign_snapshot(data, rig.keys.stranger), "stranger")


def _second_pairing(rig: Rig) -> None:
    """secom is also the root of `secom-x`, whose subordinate is a third party."""
    policy = rig.exchange.policy
    key = rig.keys.stranger.public
    parties = {**policy.parties, "stranger": acc.PartyPolicy("stranger", {key.keyid: key})}
    pairing = acc.PairingPolicy("secom-x", root="secom", subordinate="stranger")
    policy = replace(policy, parties=parties, pairings={**policy.pairings, "secom-x": pairing})
    rig.exchange.policy = rig.exchange.reports.policy = policy


def test_the_server_exports_one_pairing_from_its_configuration(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    config = _server_config(tmp_path, keys)
    out = tmp_path / "exported"
    args = ["evidence", "export", "--server-config", str(config), "--pairing", PAIRING]
    result = CliRunner().invoke(invsync, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"wrote {out}: 22 log entries of test-exchange, 22 held (pairing {PAIRING}), "
        "22 checkpoints\n"
    )
    assert verify(out, *pins(keys)).exit_code == 0
    again = CliRunner().invoke(invsync, [*args, "--out", str(out)])
    assert isinstance(again.exception, ExportError)
    assert str(again.exception) == f"{out} exists and is not an empty directory: choose a new --out"


def _server_config(tmp_path: Path, keys: Keys) -> Path:
    for name in ("secom", "jprs"):
        (tmp_path / f"{name}.pub").write_bytes(keys.of(name).public.public_pem())
    write_private_key(tmp_path / "server.key", keys.server)
    for name in ("tls.crt", "tls.key", "ca.pem"):  # read by no export; must only exist
        (tmp_path / name).write_text("")
    config = tmp_path / "server.toml"
    config.write_text(
        f'[server]\nname = "{SERVER}"\nlisten = "127.0.0.1:0"\ndatabase = "server.db"\n'
        'signing_key = "server.key"\n'
        '[tls]\ncert = "tls.crt"\nkey = "tls.key"\nclient_ca = "ca.pem"\n'
        '[parties.secom]\ntls_identity = "secom"\nsigning_keys = ["secom.pub"]\n'
        '[parties.jprs]\ntls_identity = "jprs"\nsigning_keys = ["jprs.pub"]\n'
        f'[pairings.{PAIRING}]\nroot = "secom"\nsubordinate = "jprs"\n'
    )
    return config


class _NoConsistency(MemoryLog):
    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return []


def test_an_exporter_writes_nothing_the_log_served_that_does_not_verify(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    stranger = MemoryLog(leaves(rig), keys.stranger)
    with pytest.raises(ExportError, match=re.escape("no signature by a pinned key verifies")):
        export_bundle(stranger, plan(rig))
    message = (
        "what the log served does not verify: consistency check failed at checkpoints of size "
        "1 and 2: consistency 1 -> 2: the proof is empty"
    )
    with pytest.raises(ExportError, match=re.escape(message)):
        export_bundle(_NoConsistency(leaves(rig), keys.server), plan(rig))


def test_export_needs_exactly_one_configuration(tmp_path: Path) -> None:
    result = CliRunner().invoke(invsync, ["evidence", "export", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert "give exactly one of --config and --server-config" in result.stderr


# --- tampered bundles ---------------------------------------------------------------------------


def test_an_edited_file_fails_the_manifest_digests(bundle: Path, keys: Keys) -> None:
    data = (bundle / "entries.json").read_bytes()
    (bundle / "entries.json").write_bytes(data.replace(b'"index": 1,', b'"index": 1 ,'))
    actual = hashlib.sha256((bundle / "entries.json").read_bytes()).hexdigest()
    listed = json.loads((bundle / "manifest.json").read_text())["files"]["entries.json"]
    message = (
        f"manifest check failed at entries.json: SHA-256 is {actual}, the manifest lists {listed}"
    )
    failed(verify(bundle, *pins(keys)), message)


def test_a_flipped_byte_in_a_snapshot_fails_its_inclusion(bundle: Path, keys: Keys) -> None:
    def flip(entries: list[dict[str, object]]) -> None:
        leaf = bytearray(base64.b64decode(str(entries[3]["leaf"])))
        leaf[200] ^= 0x01
        entries[3]["leaf"] = base64.b64encode(bytes(leaf)).decode()

    edit_entries(bundle, flip)
    message = "inclusion check failed at entry 3: inclusion: entry 3 is not in the tree of size 22"
    failed(verify(bundle, *pins(keys)), message)


def test_a_removed_entry_is_missing_from_the_bundle(bundle: Path, keys: Keys) -> None:
    edit_entries(bundle, lambda entries: entries.pop(6))
    failed(
        verify(bundle, *pins(keys)), "inclusion check failed at entry 6: missing from the bundle"
    )


def test_two_swapped_entries_are_not_where_the_log_has_them(bundle: Path, keys: Keys) -> None:
    def swap(entries: list[dict[str, object]]) -> None:
        entries[6]["leaf"], entries[7]["leaf"] = entries[7]["leaf"], entries[6]["leaf"]

    edit_entries(bundle, swap)
    message = "inclusion check failed at entry 6: inclusion: entry 6 is not in the tree of size 22"
    failed(verify(bundle, *pins(keys)), message)


def test_a_second_checkpoint_of_one_size_with_another_root_is_a_fork(
    bundle: Path, keys: Keys
) -> None:
    other = Checkpoint(SERVER, SIZE, hashlib.sha256(b"another log").digest())
    (bundle / "checkpoints" / "000023.note").write_bytes(
        sign_checkpoint(other, SERVER, keys.server)
    )
    redigest(bundle)
    message = (
        "fork check failed at checkpoints of size 22: checkpoints/000022.note and "
        "checkpoints/000023.note have different root hashes: the log forked"
    )
    failed(verify(bundle, *pins(keys)), message)


def test_a_report_the_server_re_signed_with_other_findings_is_not_the_rebuilt_one(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forged = leaves(rig)
    body = json.loads(envelope_of(forged[21]).payload)
    dropped = body["findings"].pop(0)
    body["summary"][dropped["severity"]] -= 1
    data = canonical_json(body)
    env = sign(REPORT_PAYLOAD_TYPE, data, [keys.server])
    forged[21] = with_envelope(forged[21], env, report_id=report_id(data))
    forge(rig, forged, tmp_path / "forged")
    message = (
        "report check failed at entry 21: the signed body is not the one rebuilt from the "
        "snapshots it names (root secom v2, subordinate jprs v3); fields that differ: findings, "
        f"summary; findings against the rebuilt ones: -unattributed {dropped['sha256'][:16]}"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def test_a_rewritten_history_contradicts_the_checkpoints_in_later_receipts(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    # Re-signing every checkpoint hides an edit from checks 2 to 5, but not from the receipts
    # the parties were handed at the time.
    forged = leaves(rig)
    body = json.loads(envelope_of(forged[5]).payload)
    body["as_of"] = "2021-03-01T14:00:01Z"
    data = canonical_json(body)
    forged[5] = with_envelope(forged[5], sign(REPORT_PAYLOAD_TYPE, data, [keys.server]))
    forge(rig, forged, tmp_path / "forged")
    message = (
        "receipt check failed at entry 9: the receipt's checkpoint of size 9 has another root "
        "than the log: the party was shown a forked log"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


@pytest.mark.parametrize(("index", "kind"), [(8, "snapshot"), (6, "co-signature")])
def test_a_rotated_key_used_before_its_announcement_is_not_in_force(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path, index: int, kind: str
) -> None:
    forged = leaves(rig)
    env = envelope_of(forged[index])
    forged[index] = with_envelope(forged[index], sign(env.payload_type, env.payload, [NEW_JPRS]))
    forge(rig, forged, tmp_path / "forged")
    message = (
        f"signature check failed at entry {index}: the {kind} of jprs in pairing secom-jprs is "
        f"signed by key {NEW_JPRS.keyid[:16]}, which jprs announces only at entry 10: a key is "
        "not in force before its announcement"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def test_the_old_key_alone_after_the_rotation_is_retired(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forged = leaves(rig)
    forged[14] = snapshot_signed_by(forged[14], [keys.jprs])
    forge(rig, forged, tmp_path / "forged")
    message = (
        "signature check failed at entry 14: the snapshot of jprs in pairing secom-jprs is "
        f"signed by key {keys.jprs.keyid[:16]}, which jprs retired at version 2"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def test_a_receipt_for_a_snapshot_that_is_not_there_fails(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    receipt = receipt_for(
        party="jprs",
        pairing=PAIRING,
        version=9,
        payload=b"never pushed",
        accepted_at=NOW,
        server=SERVER,
        log_index=14,
        checkpoint=b"",
    )
    entry = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_RECEIPT, party="jprs", pairing=PAIRING, version=9)
    leaf = with_envelope(entry.SerializeToString(), sign_receipt(receipt, keys.server))
    forge(rig, [*leaves(rig), leaf], tmp_path / "forged")
    message = (
        "receipt check failed at entry 22: the receipt for the snapshot of jprs version 9 in "
        "pairing secom-jprs names entry 14, which is not that snapshot in the log before it"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def test_a_second_snapshot_of_one_version_is_equivocation(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forged = leaves(rig)
    previous = hashlib.sha256(envelope_of(forged[8]).payload).digest()
    other = payload([], version=3, previous_digest=previous)  # v3 again, listing nothing
    leaf = with_envelope(forged[14], sign(SNAPSHOT_PAYLOAD_TYPE, other, [NEW_JPRS]))
    forge(rig, [*forged, leaf], tmp_path / "forged")
    message = (
        "chain check failed at entry 22: equivocation: version 3 of jprs in pairing secom-jprs "
        "is also at entry 14, with other content"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def _reset_leaf(keys: Keys, continues_from: int, superseded: tuple[int, ...], signer: str) -> bytes:
    """A CHAIN_RESET of jprs in the pairing, its statement signed by `signer`'s key."""
    reset = ChainReset(SERVER, "jprs", PAIRING, continues_from, superseded, "INC-1", NOW)
    entry = pb.LogEntry(
        kind=pb.LOG_ENTRY_KIND_CHAIN_RESET, party="jprs", pairing=PAIRING, version=continues_from
    )
    return with_envelope(entry.SerializeToString(), sign_chain_reset(reset, getattr(keys, signer)))


@pytest.mark.parametrize(
    ("continues_from", "superseded", "message"),
    [
        (
            7,
            (),
            "the chain reset of jprs in pairing secom-jprs continues from version 7, which the "
            "log does not hold",
        ),
        (
            1,
            (2,),
            "the chain reset of jprs in pairing secom-jprs sets aside versions 2, but the log "
            "holds 3 above version 1 as well",
        ),
    ],
)
def test_a_chain_reset_must_name_what_the_log_holds(
    rig: Rig,
    logged: History,
    keys: Keys,
    tmp_path: Path,
    continues_from: int,
    superseded: tuple[int, ...],
    message: str,
) -> None:
    forged = [*leaves(rig), _reset_leaf(keys, continues_from, superseded, "server")]
    forge(rig, forged, tmp_path / "forged")
    failed(verify(tmp_path / "forged", *pins(keys)), f"chain check failed at entry 22: {message}")


def test_a_chain_reset_not_signed_by_the_server_fails(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forge(rig, [*leaves(rig), _reset_leaf(keys, 1, (2, 3), "jprs")], tmp_path / "forged")
    message = (
        "signature check failed at entry 22: the chain reset is not signed by a pinned key of "
        f"the server 'test-exchange' (signed by: {keys.jprs.keyid[:16]})"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


def test_a_chain_reset_of_every_version_above_one_verifies_and_shows(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forge(rig, [*leaves(rig), _reset_leaf(keys, 1, (2, 3), "server")], tmp_path / "forged")
    result = verify(tmp_path / "forged", *pins(keys))
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("     22  chain reset")]
    assert line.endswith(
        "the exchange operator reset jprs's chain in pairing secom-jprs to continue from "
        "version 1 (versions set aside: 2, 3; reason: INC-1)"
    )


def test_two_resets_of_one_chain_verify_the_second_lower_than_the_first(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    """The server keeps every version up to the one continued from; so does the verifier."""
    resets = [_reset_leaf(keys, 2, (3,), "server"), _reset_leaf(keys, 1, (2,), "server")]
    forge(rig, [*leaves(rig), *resets], tmp_path / "forged")
    result = verify(tmp_path / "forged", *pins(keys))
    assert result.exit_code == 0, result.output
    assert result.output.count("chain reset") == 2


def test_a_report_after_a_reset_may_not_compare_a_snapshot_it_set_aside(
    rig: Rig, logged: History, keys: Keys, tmp_path: Path
) -> None:
    forged = leaves(rig)
    forge(rig, [*forged, _reset_leaf(keys, 2, (3,), "server"), forged[21]], tmp_path / "forged")
    v3 = hashlib.sha256(envelope_of(forged[14]).payload).hexdigest()
    message = (
        "report check failed at entry 23: the report names the subordinate snapshot of jprs "
        f"version 3 ({v3[:16]}), which is not in the log before it"
    )
    failed(verify(tmp_path / "forged", *pins(keys)), message)


# --- pins ---------------------------------------------------------------------------------------


def test_a_server_key_not_in_the_bundle_verifies_nothing(bundle: Path, keys: Keys) -> None:
    result = verify(bundle, *pins(keys, "secom", "jprs", **{SERVER: keys.stranger.keyid}))
    message = (
        "checkpoint-signature check failed at checkpoints/000001.note: no key pinned for the "
        f"server 'test-exchange' is in the bundle's keys.json (pinned: {keys.stranger.keyid})"
    )
    failed(result, message)


def test_a_partys_key_pinned_as_the_servers_fails_the_checkpoints(bundle: Path, keys: Keys) -> None:
    result = verify(bundle, *pins(keys, "secom", "jprs", **{SERVER: keys.jprs.keyid}))
    message = (
        "checkpoint-signature check failed at checkpoints/000001.note: checkpoint of "
        "test-exchange: no signature by a pinned key verifies (pin the server key the log "
        "starts with, beside any later one: its rotations are followed forward from the pinned "
        "keys, never back)"
    )
    failed(result, message)


def test_a_wrong_party_pin_fails_the_first_snapshot_of_that_party(bundle: Path, keys: Keys) -> None:
    result = verify(bundle, *pins(keys, SERVER, "secom", jprs=keys.secom.keyid))
    message = (
        "signature check failed at entry 3: the snapshot of jprs in pairing secom-jprs is signed "
        f"by no key in force (signed by: {keys.jprs.keyid[:16]}; in force: "
        f"{keys.secom.keyid[:16]})"
    )
    failed(result, message)


def test_an_unpinned_party_is_trusted_with_nothing(bundle: Path, keys: Keys) -> None:
    message = (
        "signature check failed at entry 3: no key is pinned for the party 'jprs' "
        "(pass --pin jprs=KEYID)"
    )
    failed(verify(bundle, *pins(keys, SERVER, "secom")), message)


def test_the_verify_functions_raise_the_same_failure(bundle: Path, keys: Keys) -> None:
    two = {SERVER: frozenset([keys.server.keyid]), "secom": frozenset([keys.secom.keyid])}
    with pytest.raises(CheckFailed, match="no key is pinned for the party 'jprs'") as caught:
        verify_bundle(bundle, two, SERVER)
    assert (caught.value.check, caught.value.where) == ("signature", "entry 3")


# --- unreadable bundles and bad arguments exit 2 -----------------------------------------------


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invsync.server.cli", "evidence", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_a_directory_without_a_manifest_exits_2(tmp_path: Path) -> None:
    result = _run("verify", tmp_path, "--server", SERVER)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: {tmp_path / 'manifest.json'}: cannot read (No such file or directory)\n"
    )
    assert "Traceback" not in result.stderr


def test_a_malformed_pin_exits_2(tmp_path: Path) -> None:
    result = _run("verify", tmp_path, "--server", SERVER, "--pin", "jprs")
    assert result.returncode == 2
    assert "Invalid value for --pin: 'jprs': expected NAME=KEYID" in result.stderr


# --- hostile JSON: a project error naming the file, never a traceback ---------------------------


def _rewrite(bundle: Path, name: str, data: bytes) -> None:
    (bundle / name).write_bytes(data)
    if name != "manifest.json":
        redigest(bundle)


def test_deeply_nested_entries_are_a_bundle_error_naming_the_file(bundle: Path, keys: Keys) -> None:
    _rewrite(bundle, "entries.json", b"[" * 100_000)
    message = "entries.json: not valid UTF-8 JSON (nested too deeply to read)"
    with pytest.raises(BundleError, match=re.escape(message)):
        verify_bundle(bundle, _pinned(keys), SERVER)


def test_a_nested_manifest_is_a_bundle_error(bundle: Path, keys: Keys) -> None:
    _rewrite(bundle, "manifest.json", b'{"files":' * 200 + b"{}" + b"}" * 200)
    message = "manifest.json: not valid UTF-8 JSON (nested deeper than 64 levels)"
    with pytest.raises(BundleError, match=re.escape(message)):
        verify_bundle(bundle, _pinned(keys), SERVER)


def test_a_tree_size_of_5000_digits_is_a_bundle_error(bundle: Path, keys: Keys) -> None:
    _rewrite(bundle, "proofs/inclusion.json", b'{"tree_size": ' + b"9" * 5000 + b', "proofs": []}')
    message = (
        "proofs/inclusion.json: not valid UTF-8 JSON (Exceeds the limit (4300 digits) for "
        "integer string conversion: value has 5000 digits)"
    )
    with pytest.raises(BundleError, match=re.escape(message)):
        verify_bundle(bundle, _pinned(keys), SERVER)


def test_a_log_entry_or_report_nested_too_deeply_is_the_readers_own_error() -> None:
    nested = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_SNAPSHOT, envelope=b"[" * 100_000)
    with pytest.raises(MalformedLogEntry, match=re.escape("entry 3: its envelope: not valid")):
        logged_envelope(nested, "entry 3")
    with pytest.raises(ReportError, match=re.escape("report body: not valid UTF-8 JSON (nested")):
        parse_report_body(b"[" * 100_000)
    huge = b'{"version": ' + b"1" * 5000 + b"}"
    with pytest.raises(ReportError, match=re.escape("report body: not valid UTF-8 JSON (Exceeds")):
        parse_report_body(huge)


def _pinned(keys: Keys) -> dict[str, frozenset[str]]:
    return {name: frozenset([keyid]) for name, keyid in _ids(keys).items()}


_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats()
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_HOSTILE = st.one_of(
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=64),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(4301, 6000).map(lambda n: b"1" * n),
    st.sampled_from([b'{"entries": [{"index": 0, "leaf": "AA=="}]}', b'{"proofs": {}}']),
)
_FILES = [
    "manifest.json",
    "entries.json",
    "keys.json",
    "proofs/inclusion.json",
    "proofs/consistency.json",
    "checkpoints/000001.note",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(_FILES), data=_HOSTILE)
def test_any_content_of_any_bundle_file_exits_1_or_2_with_a_project_error(
    bundle: Path, keys: Keys, tmp_path_factory: pytest.TempPathFactory, name: str, data: bytes
) -> None:
    copy = tmp_path_factory.mktemp("fuzzed") / "bundle"
    shutil.copytree(bundle, copy)
    _rewrite(copy, name, data)
    result = verify(copy, *pins(keys))
    if isinstance(result.exception, InvsyncError):
        return  # the command's caller prints it and exits 2 (test_..._exits_2 above)
    assert result.exit_code == 1, repr(result.exception)
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ") and " check failed at " in result.stderr


# --- scope: an unsigned label, checked against what the bundle withholds ------------------------


def test_withheld_entries_in_a_bundle_of_all_pairings_fail_the_scope_check(
    bundle: Path, keys: Keys
) -> None:
    def withhold(entries: list[dict[str, object]]) -> None:
        for item in entries[4:9]:
            leaf = base64.b64decode(str(item.pop("leaf")))
            item["leaf_hash"] = base64.b64encode(tlog.leaf_hash(leaf)).decode()

    inclusion = json.loads((bundle / "proofs/inclusion.json").read_text())
    inclusion["proofs"] = [p for p in inclusion["proofs"] if not 4 <= p["index"] <= 8]
    (bundle / "proofs/inclusion.json").write_text(json.dumps(inclusion))
    edit_entries(bundle, withhold)
    message = (
        "scope check failed at entry 4: withheld (a leaf hash alone), but the bundle's scope is "
        "all pairings: an export of all pairings withholds nothing"
    )
    failed(verify(bundle, *pins(keys)), message)


def test_a_party_bundle_labelled_all_pairings_fails_the_scope_check(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    write_bundle(export_bundle(PartyLog(rig, "jprs"), plan(rig)), tmp_path / "jprs")
    message = "scope check failed at entry 22: withheld (a leaf hash alone), but the bundle's"
    result = verify(tmp_path / "jprs", *pins(keys))
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {message}")


def _relabel(bundle: Path, scope: dict[str, str]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["scope"] = scope
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_scope_naming_another_pairing_fails_at_the_first_entry_outside_it(
    bundle: Path, keys: Keys
) -> None:
    _relabel(bundle, {"kind": "pairing", "pairing": "nonexistent"})
    message = (
        "scope check failed at entry 0: an entry of pairing 'secom-jprs', outside the bundle's "
        "scope (pairing nonexistent)"
    )
    failed(verify(bundle, *pins(keys)), message)


def test_a_pairing_scope_with_no_entry_in_the_log_fails(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    export_rig(rig, tmp_path / "x", Scope("secom-x"))
    _relabel(tmp_path / "x", {"kind": "pairing", "pairing": "nonexistent"})
    edit_entries(tmp_path / "x", lambda entries: None)
    result = verify(tmp_path / "x", *pins(keys, stranger=keys.stranger.keyid))
    message = "scope check failed at entry 22: an entry of pairing 'secom-x', outside the"
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {message}")


# --- the server's name is the verifier's, not the manifest's ----------------------------------


def test_a_manifest_naming_another_server_fails_the_manifest_check(
    bundle: Path, keys: Keys
) -> None:
    result = CliRunner().invoke(
        invsync, ["evidence", "verify", str(bundle), "--server", "secom", *pins(keys)]
    )
    failed(
        result,
        "manifest check failed at manifest.json: names the server 'test-exchange', not 'secom' "
        "(--server)",
    )


def test_verify_requires_the_servers_name(bundle: Path, keys: Keys) -> None:
    result = CliRunner().invoke(invsync, ["evidence", "verify", str(bundle), *pins(keys)])
    assert result.exit_code == 2
    assert "Missing option '--server'" in result.stderr


# --- files: regular files and directories only, each read once ---------------------------------


def test_a_symlinked_checkpoints_directory_fails_the_manifest_check(
    bundle: Path, keys: Keys, tmp_path: Path
) -> None:
    (bundle / "checkpoints").rename(tmp_path / "elsewhere")
    (bundle / "checkpoints").symlink_to(tmp_path / "elsewhere")
    message = "manifest check failed at checkpoints: a symbolic link, not a file of the bundle"
    failed(verify(bundle, *pins(keys)), message)


def test_a_symlinked_manifest_fails_the_manifest_check(
    bundle: Path, keys: Keys, tmp_path: Path
) -> None:
    (bundle / "manifest.json").rename(tmp_path / "manifest.json")
    (bundle / "manifest.json").symlink_to(tmp_path / "manifest.json")
    message = "manifest check failed at manifest.json: a symbolic link, not a file of the bundle"
    failed(verify(bundle, *pins(keys)), message)


def test_a_fifo_in_the_bundle_fails_without_blocking(bundle: Path, keys: Keys) -> None:
    os.mkfifo(bundle / "proofs" / "pipe")
    failed(
        verify(bundle, *pins(keys)),
        "manifest check failed at proofs/pipe: a FIFO, not a file of the bundle",
    )


def test_each_file_is_read_once(bundle: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real = os.open

    def counting(path: str | Path, flags: int, *args: int) -> int:
        opened.append(Path(path).relative_to(bundle).as_posix())
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", counting)
    verify_bundle(bundle, _pinned(keys), SERVER)
    assert sorted(opened) == sorted(set(opened))
    assert len(opened) == SIZE + 5


# --- a bundle holds nothing unverified --------------------------------------------------------


def test_an_inclusion_proof_for_an_entry_the_bundle_does_not_hold_fails(
    rig: Rig, logged: History, records: list[CertRecord], keys: Keys, tmp_path: Path
) -> None:
    _stranger_pushes(rig, records)
    export_rig(rig, tmp_path / "one", Scope(PAIRING))
    path = tmp_path / "one" / "proofs" / "inclusion.json"
    data = json.loads(path.read_text())
    data["proofs"].append({"index": SIZE, "hashes": []})
    path.write_text(json.dumps(data))
    redigest(tmp_path / "one")
    message = (
        "inclusion check failed at proofs/inclusion.json: a proof for entry 22, which the "
        "bundle does not hold: it proves nothing"
    )
    failed(verify(tmp_path / "one", *pins(keys)), message)


def test_a_consistency_proof_between_sizes_no_check_uses_fails(bundle: Path, keys: Keys) -> None:
    path = bundle / "proofs" / "consistency.json"
    data = json.loads(path.read_text())
    data["proofs"].append({"first": 1, "second": 3, "hashes": []})
    path.write_text(json.dumps(data))
    redigest(bundle)
    message = (
        "consistency check failed at proofs/consistency.json: a proof between sizes 1 and 3, "
        "which are not two consecutive checkpoints of the bundle: it proves nothing here"
    )
    failed(verify(bundle, *pins(keys)), message)


# --- each report's signers --------------------------------------------------------------------


def test_the_summaries_show_each_reports_signers(bundle: Path, keys: Keys) -> None:
    verified = verify_bundle(bundle, _pinned(keys), SERVER)
    markdown = render_summary(verified, "markdown")
    assert "Every check passed, with 2 reports not signed by every party." in markdown
    assert "<br>signed: server valid, root secom absent, subordinate jprs absent" in markdown
    html = render_summary(verified, "html")
    assert "<br>signed: server valid, root secom valid, subordinate jprs valid" in html


# --- one --pin for every command -------------------------------------------------------------


def test_report_commands_refuse_a_pin_whose_key_id_is_not_a_key_id(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text("{}")
    result = CliRunner().invoke(invsync, ["report", "verify", str(report), "--pin", "jprs=xyz"])
    assert result.exit_code == 2
    assert (
        "Invalid value for --pin: 'jprs=xyz': expected NAME=KEYID, the key id 64 lowercase hex "
        "digits"
    ) in result.stderr


def test_the_entry_point_exits_1_on_a_tampered_bundle(
    bundle: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: through `run_cli`, as a script sees it, a failed check is exit 1."""
    from invsync.server.cli import main

    data = (bundle / "entries.json").read_bytes()
    (bundle / "entries.json").write_bytes(data.replace(b'"index": 1,', b'"index": 1 ,'))
    argv = ["invsync", "evidence", "verify", str(bundle), "--server", SERVER, *pins(keys)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert capsys.readouterr().err.startswith("error: manifest check failed at entries.json")
