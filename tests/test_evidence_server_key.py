"""Evidence across the exchange server's key rotation: a bundle verifies from the server key
pinned before the rotation alone, and a log whose checkpoints do not follow the rotation as the
server must sign them (the retired key after it, the new key alone on the announcement's tree)
does not verify."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.evidence.bundle import Bundle
from invsync.agent.evidence.export import export_bundle
from invsync.agent.evidence.failures import ExportError
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.exchange.server_key import ServerKeyAnnouncement, server_key_entry
from invsync.agent.model.record import CertRecord
from invsync.server.storage import LogWriter
from tests.evidence_rig import (
    MemoryLog,
    _cosign_latest,
    _payload,
    _push,
    export_rig,
    history,
    plan,
)
from tests.exchange_rig import SERVER, Rig
from tests.test_evidence import NEW_JPRS, failed, pins, verify

NEW_SERVER = generate()
AT = datetime(2021, 3, 2, tzinfo=UTC)


def _rotate(rig: Rig) -> int:
    """The rig's server announces NEW_SERVER as `invsync server keys rotate` does, and signs
    with it from then on; the announcement's index."""
    old = rig.keys.server
    entry = server_key_entry(
        ServerKeyAnnouncement(SERVER, NEW_SERVER.public, old.public, AT), old, NEW_SERVER
    )
    with rig.store.transaction():
        index = LogWriter(SERVER, old).append(rig.store, entry, NEW_SERVER).index
    for signer in (rig.exchange, rig.exchange.reports):
        signer.key, signer.log = NEW_SERVER, LogWriter(SERVER, NEW_SERVER)
    return index


@pytest.fixture
def rotated(rig: Rig, records: list[CertRecord]) -> int:
    """The evidence history, the server's rotation, then secom v3 and both co-signing."""
    history(rig, records, NEW_JPRS)
    index = _rotate(rig)
    secom2 = rig.store.snapshot("secom", "secom-jprs", 2)
    assert secom2 is not None
    _push(rig, _payload(rig, "secom", 3, records[1:], secom2.payload), "secom")
    _cosign_latest(rig, NEW_JPRS)
    return index


def test_a_bundle_verifies_across_the_rotation_from_the_old_key_alone(
    rig: Rig, rotated: int, tmp_path: Path
) -> None:
    bundle = export_rig(rig, tmp_path / "bundle")  # the exporter pins the old key too
    assert {k.keyid for k in bundle.keys.server} == {rig.keys.server.keyid, NEW_SERVER.keyid}
    result = verify(tmp_path / "bundle", *pins(rig.keys))  # the server's old key id pinned
    assert result.exit_code == 0, result.output
    assert (
        f"the server {SERVER} rotated to server key {NEW_SERVER.keyid[:16]} (retired "
        f"{rig.keys.server.keyid[:16]})"
    ) in result.stdout
    assert "\nverified: every check passed" in result.stdout


def _export(rig: Rig, index: int, signers: dict[int, list[SigningKey]]) -> Bundle:
    """The rig's log, its checkpoints signed by `signers[size]`, else by the key in force (the
    old one up to the announcement at `index`, then the new one)."""
    leaves = rig.store.log_entries(0, rig.store.log_size(), 1 << 30)

    def keys(size: int) -> list[SigningKey]:
        return signers.get(size, [rig.keys.server] if size <= index else [NEW_SERVER])

    return export_bundle(MemoryLog(leaves, keys), plan(rig))


def test_the_log_as_the_server_signs_it_exports(rig: Rig, rotated: int) -> None:
    both = {rotated + 1: [rig.keys.server, NEW_SERVER]}
    assert _export(rig, rotated, both).checkpoints  # the control: each check below can fail


def test_a_checkpoint_after_the_rotation_by_the_retired_key_does_not_verify(
    rig: Rig, rotated: int
) -> None:
    size = rotated + 2
    signers = {rotated + 1: [rig.keys.server, NEW_SERVER], size: [rig.keys.server]}
    with pytest.raises(ExportError) as refused:
        _export(rig, rotated, signers)
    assert str(refused.value) == (
        "what the log served does not verify: checkpoint-signature check failed at "
        f"checkpoints/{size:06d}.note: refused [retired-server-key]: the checkpoint of tree size "
        f"{size} is signed by server key {rig.keys.server.keyid[:16]} alone, which the server "
        f"replaced with key {NEW_SERVER.keyid[:16]} at log entry {rotated}"
    )


def test_an_announcement_under_the_new_key_alone_proves_nothing(rig: Rig, rotated: int) -> None:
    size = rotated + 1
    with pytest.raises(ExportError) as refused:
        _export(rig, rotated, {size: [NEW_SERVER]})
    assert str(refused.value) == (
        "what the log served does not verify: checkpoint-signature check failed at "
        f"checkpoints/{size:06d}.note: checkpoint of {SERVER}: no signature by a pinned key "
        "verifies"
    )


def test_an_auditor_who_pins_only_the_key_in_force_is_told_to_pin_the_first(
    rig: Rig, rotated: int, tmp_path: Path
) -> None:
    export_rig(rig, tmp_path / "bundle")
    result = verify(
        tmp_path / "bundle", *pins(rig.keys, "secom", "jprs", **{SERVER: NEW_SERVER.keyid})
    )
    failed(
        result,
        "checkpoint-signature check failed at checkpoints/000001.note: checkpoint of "
        f"{SERVER}: no signature by a pinned key verifies (pin the server key the log starts "
        "with, beside any later one: its rotations are followed forward from the pinned keys, "
        "never back)",
    )
    both = [*pins(rig.keys), "--pin", f"{SERVER}={NEW_SERVER.keyid}"]
    assert verify(tmp_path / "bundle", *both).exit_code == 0  # the first key beside it
