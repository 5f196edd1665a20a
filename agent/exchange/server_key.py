"""The announcement of the exchange server's new signing key: a SERVER_KEY log entry.

`invsync server keys rotate` signs a ServerKeyBody (the server's name, the new and the old key's
SubjectPublicKeyInfo, when) with the old key and with the new one, and appends it to the log;
the checkpoint of the tree ending with that entry carries both keys' signatures. A reader that
trusts the old key (`agent.exchange.server_keyring.ServerKeyRing`) opens the entry with
`open_server_key`: the old key's and the new key's signatures over the exact bytes first, the
body after, and the rotation it proves for the reader to record. Nothing in the entry is trusted
before that; the caller has proven the entry included in a checkpoint a trusted key signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from google.protobuf.message import DecodeError

from invsync.agent.errors import InvsyncError, bounded
from invsync.agent.exchange import envelope
from invsync.agent.exchange.envelope import Envelope, shown_keyids
from invsync.agent.exchange.keys import SigningKey, VerifyKey, verify_key_from_spki_der
from invsync.agent.exchange.log_entry import kind_name, log_entry, logged_envelope
from invsync.agent.exchange.record_codec import from_timestamp, timestamp
from invsync.agent.exchange.rejections import ServerKeyAnnouncementError
from invsync.agent.exchange.server_keyring import ServerKeyRing, ServerRotation
from invsync.v1 import invsync_pb2 as pb

__all__ = [
    "SERVER_KEY_PAYLOAD_TYPE",
    "ServerKeyAnnouncement",
    "open_server_key",
    "server_key_entry",
]

SERVER_KEY_PAYLOAD_TYPE = "application/vnd.invsync.server-key.v1+protobuf"


@dataclass(frozen=True)
class ServerKeyAnnouncement:
    """The server `server` signs with `new_key` from this announcement on, not `old_key`."""

    server: str
    new_key: VerifyKey
    old_key: VerifyKey
    announced_at: datetime


def server_key_entry(
    announcement: ServerKeyAnnouncement, old: SigningKey, new: SigningKey
) -> pb.LogEntry:
    """The SERVER_KEY log entry: the body signed by both keys (which must be the body's)."""
    if (old.public.keyid, new.public.keyid) != (
        announcement.old_key.keyid,
        announcement.new_key.keyid,
    ):
        raise ValueError("the announcement must be signed by the keys it names")
    body = pb.ServerKeyBody(
        server=announcement.server,
        new_key=announcement.new_key.spki_der,
        old_key=announcement.old_key.spki_der,
        announced_at=timestamp(announcement.announced_at),
    )
    env = envelope.sign(SERVER_KEY_PAYLOAD_TYPE, body.SerializeToString(), [old, new])
    return log_entry(
        pb.LOG_ENTRY_KIND_SERVER_KEY,
        env,
        pairing="",
        announced_key=announcement.new_key.spki_der,
    )


def open_server_key(
    entry: pb.LogEntry, index: int, server: str, ring: ServerKeyRing
) -> ServerRotation:
    """The rotation SERVER_KEY entry `index` proves to a reader whose keys are `ring`: signed
    over its exact bytes by a key in force there and by the key it announces, naming `server`,
    the key in force as the one it replaces and, in the entry, the key it announces.
    ServerKeyAnnouncementError naming the entry otherwise."""
    where = f"log entry {index}"
    if entry.kind != pb.LOG_ENTRY_KIND_SERVER_KEY:
        raise ServerKeyAnnouncementError(f"{where} is a {kind_name(entry)} entry, not SERVER_KEY")
    try:
        env = logged_envelope(entry, where)
    except InvsyncError as e:
        raise ServerKeyAnnouncementError(str(e)) from e
    if env.payload_type != SERVER_KEY_PAYLOAD_TYPE:
        raise ServerKeyAnnouncementError(
            f"{where}: payload type {bounded(env.payload_type)!r} is not "
            f"{SERVER_KEY_PAYLOAD_TYPE!r}"
        )
    in_force = ring.keys_at(index + 1)
    result = envelope.verify(env, in_force)
    if not result.threshold_met(1):
        signers = shown_keyids(tuple(s.keyid for s in env.signatures)) or "nobody"
        raise ServerKeyAnnouncementError(
            f"{where} announces a new server key, but no server key in force there signed it "
            f"(signed by: {signers})"
        )
    announcement = decode_announcement(env, where)
    _check_body(announcement, entry, index, server, ring)
    if not envelope.verify(env, {announcement.new_key.keyid: announcement.new_key}).threshold_met(
        1
    ):
        raise ServerKeyAnnouncementError(
            f"{where} announces server key {announcement.new_key.keyid[:16]}, but that key did "
            "not sign the announcement"
        )
    return ServerRotation(
        index, announcement.new_key, announcement.old_key, announcement.announced_at
    )


def _check_body(
    announcement: ServerKeyAnnouncement,
    entry: pb.LogEntry,
    index: int,
    server: str,
    ring: ServerKeyRing,
) -> None:
    where = f"log entry {index}"
    in_force = ring.keys_at(index + 1)
    if announcement.server != server:
        raise ServerKeyAnnouncementError(
            f"{where} announces a key of server {bounded(announcement.server)!r}, not {server!r}"
        )
    # A new key pinned by hand (after a leak) vouches for the key it names as replaced.
    repinned = announcement.new_key.keyid in ring.pinned
    if announcement.old_key.keyid not in in_force and not repinned:
        raise ServerKeyAnnouncementError(
            f"{where} replaces server key {announcement.old_key.keyid[:16]}, which is not the "
            "key in force there"
        )
    if entry.announced_key != announcement.new_key.spki_der:
        raise ServerKeyAnnouncementError(
            f"{where}: the entry's announced_key is not the key its signed body announces"
        )
    if announcement.new_key.keyid == announcement.old_key.keyid:
        raise ServerKeyAnnouncementError(f"{where} announces the key it replaces")
    retired = ring.retired(announcement.new_key.keyid)
    if retired is not None:
        raise ServerKeyAnnouncementError(
            f"{where} announces server key {announcement.new_key.keyid[:16]}, which the server "
            f"retired at log entry {retired.index}"
        )


def decode_announcement(env: Envelope, where: str) -> ServerKeyAnnouncement:
    """The body of an envelope whose signature by a key in force the caller verified (or, for
    the server reading its own database, which only it writes, trusts)."""
    try:
        body = pb.ServerKeyBody.FromString(env.payload)
        announced_at = from_timestamp(body.announced_at, "server key announced_at")
        new_key = verify_key_from_spki_der(body.new_key, source=f"{where}: new_key")
        old_key = verify_key_from_spki_der(body.old_key, source=f"{where}: old_key")
    except (DecodeError, ValueError, InvsyncError) as e:
        raise ServerKeyAnnouncementError(f"{where}: not a ServerKeyBody ({bounded(e)})") from e
    return ServerKeyAnnouncement(body.server, new_key, old_key, announced_at)
