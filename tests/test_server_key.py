"""The exchange server's key rotation in band: the SERVER_KEY announcement, the ring that follows
it, and `invsync server keys rotate` on a stopped server's database."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.exchange import envelope, tlog
from invsync.agent.exchange.checkpoint import BadCheckpoint, Checkpoint, sign_checkpoint
from invsync.agent.exchange.keys import SigningKey, generate, load_signing_key, write_private_key
from invsync.agent.exchange.log_entry import canonical_envelope, parse_log_entry
from invsync.agent.exchange.rejections import RetiredServerKeyError, ServerKeyAnnouncementError
from invsync.agent.exchange.server_key import (
    SERVER_KEY_PAYLOAD_TYPE,
    ServerKeyAnnouncement,
    open_server_key,
    server_key_entry,
)
from invsync.agent.exchange.server_keyring import (
    ServerKeyRing,
    ServerRotation,
    open_checkpoint_in_force,
)
from invsync.server.chain_reset import reset_chain
from invsync.server.config import ServerConfig, load_server_config
from invsync.server.server_keys import KeyNotInForce, check_key_in_force, rotate_server_key
from invsync.server.storage import LogWriter
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb

AT = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
SERVER = "demo-exchange"
OLD, NEW, NEWER, OTHER = (generate() for _ in range(4))


def _ring(*rotations: ServerRotation) -> ServerKeyRing:
    return ServerKeyRing({OLD.keyid: OLD.public}, rotations)


def _announce(old: SigningKey = OLD, new: SigningKey = NEW, server: str = SERVER) -> pb.LogEntry:
    return server_key_entry(ServerKeyAnnouncement(server, new.public, old.public, AT), old, new)


def _resigned(entry: pb.LogEntry, *signers: SigningKey) -> pb.LogEntry:
    """The entry's body signed by `signers` instead."""
    body = pb.ServerKeyBody.FromString(
        envelope.Envelope.from_json_dict(json.loads(entry.envelope)).payload
    )
    env = envelope.sign(SERVER_KEY_PAYLOAD_TYPE, body.SerializeToString(), list(signers))
    copy = pb.LogEntry()
    copy.CopyFrom(entry)
    copy.envelope = canonical_envelope(env)
    return copy


def test_an_announcement_signed_by_both_keys_proves_the_rotation() -> None:
    rotation = open_server_key(_announce(), 7, SERVER, _ring())
    assert (rotation.index, rotation.announced_at) == (7, AT)
    assert (rotation.new_key.keyid, rotation.old_key.keyid) == (NEW.keyid, OLD.keyid)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            _resigned(_announce(), NEW),
            "log entry 7 announces a new server key, but no server key in force there signed it "
            f"(signed by: {NEW.keyid})",
        ),
        (
            _resigned(_announce(), OLD),
            f"log entry 7 announces server key {NEW.keyid[:16]}, but that key did not sign the "
            "announcement",
        ),
        (
            _announce(server="another-exchange"),
            "log entry 7 announces a key of server 'another-exchange', not 'demo-exchange'",
        ),
        (
            _announce(old=OTHER, new=NEW),
            f"log entry 7 announces a new server key, but no server key in force there signed it "
            f"(signed by: {OTHER.keyid}, {NEW.keyid})",
        ),
    ],
)
def test_an_announcement_that_proves_nothing_is_refused(entry: pb.LogEntry, message: str) -> None:
    with pytest.raises(ServerKeyAnnouncementError) as refused:
        open_server_key(entry, 7, SERVER, _ring())
    assert str(refused.value) == f"refused [bad-server-key-announcement]: {message}"


def test_the_entry_must_name_the_key_its_signed_body_announces() -> None:
    entry = _announce()
    entry.announced_key = NEWER.public.spki_der
    with pytest.raises(ServerKeyAnnouncementError, match="the entry's announced_key is not the"):
        open_server_key(entry, 7, SERVER, _ring())


def test_the_old_key_must_be_the_one_in_force() -> None:
    # OTHER signs with OLD too, so a key in force signed: but the body says it replaces OTHER.
    body = pb.ServerKeyBody(
        server=SERVER, new_key=NEW.public.spki_der, old_key=OTHER.public.spki_der
    )
    body.announced_at.FromDatetime(AT.replace(tzinfo=None))
    env = envelope.sign(SERVER_KEY_PAYLOAD_TYPE, body.SerializeToString(), [OLD, NEW])
    entry = pb.LogEntry(
        kind=pb.LOG_ENTRY_KIND_SERVER_KEY,
        envelope=canonical_envelope(env),
        announced_key=NEW.public.spki_der,
    )
    with pytest.raises(ServerKeyAnnouncementError) as refused:
        open_server_key(entry, 7, SERVER, _ring())
    assert f"replaces server key {OTHER.keyid[:16]}, which is not the key in force there" in str(
        refused.value
    )


def test_a_reader_that_pinned_the_new_key_by_hand_follows_the_announcement() -> None:
    repinned = ServerKeyRing({NEW.keyid: NEW.public})
    rotation = open_server_key(_announce(), 7, SERVER, repinned)
    followed = repinned.with_rotation(rotation)
    assert set(followed.keys_at(7)) == {NEW.keyid, OLD.keyid}  # the history before it reads
    assert set(followed.keys_at(None)) == {NEW.keyid}
    # But an announcement of yet another key, by the key left behind, proves nothing to it.
    other = server_key_entry(
        ServerKeyAnnouncement(SERVER, NEWER.public, OLD.public, AT), OLD, NEWER
    )
    with pytest.raises(ServerKeyAnnouncementError, match="no server key in force there signed"):
        open_server_key(other, 9, SERVER, followed)


def test_a_retired_key_cannot_come_back() -> None:
    ring = _ring(ServerRotation(3, NEW.public, OLD.public, AT))
    back = server_key_entry(ServerKeyAnnouncement(SERVER, OLD.public, NEW.public, AT), NEW, OLD)
    with pytest.raises(ServerKeyAnnouncementError) as refused:
        open_server_key(back, 9, SERVER, ring)
    assert f"announces server key {OLD.keyid[:16]}, which the server retired at log entry 3" in str(
        refused.value
    )


def test_another_kind_of_entry_is_no_announcement() -> None:
    entry = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_REPORT)
    with pytest.raises(ServerKeyAnnouncementError, match="log entry 7 is a REPORT entry, not"):
        open_server_key(entry, 7, SERVER, _ring())


def test_the_keys_in_force_follow_the_log_position() -> None:
    ring = _ring(ServerRotation(4, NEW.public, OLD.public, AT))
    assert set(ring.keys_at(4)) == {OLD.keyid}  # the tree before the announcement
    assert set(ring.keys_at(5)) == {OLD.keyid, NEW.keyid}  # the one ending with it
    assert set(ring.keys_at(6)) == {NEW.keyid}
    assert set(ring.keys_at(None)) == {NEW.keyid}
    assert set(ring.known()) == {OLD.keyid, NEW.keyid}
    assert ring.latest_index() == 4


def test_a_pin_by_hand_wins_over_an_announcement_from_a_key_no_longer_pinned() -> None:
    forged = ServerRotation(4, OTHER.public, OLD.public, AT)  # by the leaked OLD key
    repinned = ServerKeyRing({NEW.keyid: NEW.public}, (forged,))
    assert repinned.chain() == []
    assert set(repinned.keys_at(None)) == {NEW.keyid}
    # Re-pinning the key the log announced keeps the history readable.
    followed = ServerKeyRing(
        {NEW.keyid: NEW.public}, (ServerRotation(4, NEW.public, OLD.public, AT),)
    )
    assert set(followed.keys_at(3)) == {NEW.keyid, OLD.keyid}


def _note(size: int, first: SigningKey, *also: SigningKey) -> bytes:
    return sign_checkpoint(Checkpoint(SERVER, size, b"\x01" * 32), SERVER, first, *also)


def test_a_checkpoint_opens_only_with_the_key_in_force_for_its_size() -> None:
    ring = _ring(ServerRotation(4, NEW.public, OLD.public, AT))
    assert open_checkpoint_in_force(_note(4, OLD), SERVER, ring).size == 4
    assert open_checkpoint_in_force(_note(5, OLD, NEW), SERVER, ring).size == 5
    assert open_checkpoint_in_force(_note(6, NEW), SERVER, ring).size == 6
    with pytest.raises(RetiredServerKeyError) as retired:
        open_checkpoint_in_force(_note(6, OLD), SERVER, ring)
    assert str(retired.value) == (
        "refused [retired-server-key]: the checkpoint of tree size 6 is signed by server key "
        f"{OLD.keyid[:16]} alone, which the server replaced with key {NEW.keyid[:16]} at log "
        "entry 4"
    )
    with pytest.raises(RetiredServerKeyError) as early:
        open_checkpoint_in_force(_note(3, NEW), SERVER, ring)
    assert f"tree size 3 is signed by server key {NEW.keyid[:16]}, not yet in force there" in str(
        early.value
    )


def test_a_checkpoint_by_an_unannounced_key_is_refused() -> None:
    with pytest.raises(BadCheckpoint) as refused:
        open_checkpoint_in_force(_note(6, NEW), SERVER, _ring())
    assert (
        str(refused.value) == "checkpoint of demo-exchange: no signature by a pinned key verifies"
    )


def test_rotate_logs_the_announcement_under_a_checkpoint_both_keys_signed(fed: Path) -> None:
    config = load_server_config(fed / "server.toml")
    old = load_signing_key(config.signing_key)
    write_private_key(fed / "keys" / "server-2.key", NEW)
    done = rotate_server_key(config, fed / "keys" / "server-2.key", now=AT)
    assert done.logged.index == 0
    store = ServerStore(config.database)
    try:
        (leaf,) = store.log_entries(0, 1, 1 << 20)
        entry = parse_log_entry(leaf, "entry 0")
        rotation = open_server_key(entry, 0, SERVER, ServerKeyRing({old.keyid: old.public}))
        assert rotation.new_key.keyid == NEW.keyid
        note = store.checkpoint(1)
        assert note is not None and note == done.logged.checkpoint
        root = tlog.root([tlog.leaf_hash(leaf)])
        for key in (old, NEW):  # either key alone opens it
            opened = open_checkpoint_in_force(
                note, SERVER, ServerKeyRing({key.keyid: key.public}, (rotation,))
            )
            assert opened.root == root
        check_key_in_force(store, SERVER, NEW, "server.signing_key")
        with pytest.raises(KeyNotInForce) as refused:
            check_key_in_force(store, SERVER, old, "server.signing_key")
        assert str(refused.value) == (
            f"server.signing_key (key {old.keyid[:16]}) was retired by log entry 0: the key in "
            f"force is {NEW.keyid[:16]}, announced by log entry 0; set server.signing_key to "
            "that key"
        )
    finally:
        store.close()
    # Run again with the configuration unchanged: the configured key is retired.
    with pytest.raises(KeyNotInForce, match="was retired by log entry 0"):
        rotate_server_key(config, fed / "keys" / "server-2.key", now=AT)
    with sqlite3.connect(config.database) as db:
        assert db.execute("SELECT count(*) FROM log_entries").fetchone() == (1,)


def test_rotating_to_the_configured_key_is_refused(fed: Path) -> None:
    config = load_server_config(fed / "server.toml")
    with pytest.raises(KeyNotInForce) as refused:
        rotate_server_key(config, config.signing_key)
    assert str(refused.value) == (
        f"{config.signing_key} is the key server.signing_key of {config.file} already names"
    )


def _rotated_fed(fed: Path) -> tuple[ServerConfig, SigningKey]:
    """The demo server, its key rotated to NEW and its configuration not switched yet."""
    config = load_server_config(fed / "server.toml")
    write_private_key(fed / "keys" / "server-2.key", NEW)
    rotate_server_key(config, fed / "keys" / "server-2.key", now=AT)
    return config, load_signing_key(config.signing_key)


def _log_size(config: ServerConfig) -> int:
    with sqlite3.connect(config.database) as db:
        count: int = db.execute("SELECT count(*) FROM log_entries").fetchone()[0]
    return count


def test_a_chain_reset_with_the_retired_key_is_refused_and_nothing_logged(fed: Path) -> None:
    config, old = _rotated_fed(fed)
    pairing = next(iter(config.pairings.values()))
    with pytest.raises(KeyNotInForce) as refused:
        reset_chain(
            config, party=pairing.root, pairing=pairing.name, continues_from=0, reason="misuse"
        )
    assert str(refused.value) == (
        f"{config.file}: server.signing_key (key {old.keyid[:16]}) was retired by log entry 0: "
        f"the key in force is {NEW.keyid[:16]}, announced by log entry 0; set "
        "server.signing_key to that key"
    )
    assert _log_size(config) == 1


def test_the_key_in_force_is_the_last_announced_wherever_it_stands(fed: Path) -> None:
    # A log that went on after the announcement with the retired key alone (as a reset-chain
    # run before the configuration was switched used to make): neither key may start.
    config, old = _rotated_fed(fed)
    store = ServerStore(config.database)
    try:
        with store.transaction():
            LogWriter(SERVER, old).append(store, pb.LogEntry(kind=pb.LOG_ENTRY_KIND_REPORT))
        with pytest.raises(KeyNotInForce) as refused:
            check_key_in_force(store, SERVER, old, "server.signing_key")
        assert str(refused.value).startswith(
            f"server.signing_key (key {old.keyid[:16]}) was retired by log entry 0: the key in "
            f"force is {NEW.keyid[:16]}"
        )
        with pytest.raises(KeyNotInForce) as refused:
            check_key_in_force(store, SERVER, NEW, "server.signing_key")
        assert str(refused.value).startswith(
            f"server.signing_key (key {NEW.keyid[:16]}) did not sign the log's latest "
            "checkpoint: it is not the server's key in force"
        )
        with pytest.raises(KeyNotInForce) as refused:
            check_key_in_force(store, SERVER, OTHER, "server.signing_key")
        assert str(refused.value) == (
            f"server.signing_key (key {OTHER.keyid[:16]}) is not the server's signing key: the "
            f"key in force is {NEW.keyid[:16]}, announced by log entry 0; set "
            "server.signing_key to that key"
        )
    finally:
        store.close()


def test_rotating_back_to_a_retired_key_is_refused(fed: Path) -> None:
    config, old = _rotated_fed(fed)
    switched = replace(config, signing_key=fed / "keys" / "server-2.key")
    with pytest.raises(KeyNotInForce) as refused:
        rotate_server_key(switched, config.signing_key, now=AT)
    assert str(refused.value) == (
        f"{config.signing_key} holds server key {old.keyid[:16]}, which the server retired at "
        "log entry 0: a retired key never signs again; announce a new key"
    )
    assert _log_size(config) == 1
    write_private_key(fed / "keys" / "server-3.key", NEWER)
    assert rotate_server_key(switched, fed / "keys" / "server-3.key", now=AT).logged.index == 1
