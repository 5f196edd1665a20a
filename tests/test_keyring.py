"""Key rotation: a new key is accepted only from a snapshot signed by the old and the new key,
and after the switch a snapshot signed by the old key alone is refused (server and peer)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from invsync.agent.exchange import acceptance as acc
from invsync.agent.exchange import envelope, keys, snapshot
from invsync.agent.exchange.keyring import KeyRing, Rotation, rotation_from_row, rotation_row
from invsync.agent.exchange.rejections import (
    KeyAnnouncementError,
    RetiredKeyError,
    SnapshotRejected,
    UntrustedSignerError,
)
from invsync.agent.model.record import CertRecord
from tests.paths import SECOM_JPRS

FIXTURES = SECOM_JPRS
NOW = datetime(2021, 3, 1, 12, 0, tzinfo=UTC)
PAIRING = "secom-jprs"
OTHER = "secom-jprs-2"


OLD, NEW, NEWER, SECOM = (keys.generate() for _ in range(4))


def policy() -> acc.AcceptancePolicy:
    return acc.AcceptancePolicy(
        parties={
            "secom": acc.PartyPolicy("secom", {SECOM.keyid: SECOM.public}),
            "jprs": acc.PartyPolicy("jprs", {OLD.keyid: OLD.public}),
        },
        pairings={
            name: acc.PairingPolicy(name, root="secom", subordinate="jprs")
            for name in (PAIRING, OTHER)
        },
    )


class Server:
    """accept() with the version chain and the rotations a server store would keep."""

    def __init__(self) -> None:
        self.last: dict[str, acc.LastAccepted] = {}
        self.rotations: list[Rotation] = []

    def payload(
        self, records: list[CertRecord], pairing: str = PAIRING, announce: bytes = b""
    ) -> bytes:
        last = self.last.get(pairing)
        return snapshot.build_payload(
            party="jprs",
            pairing=pairing,
            role="subordinate",
            version=(last.version if last else 0) + 1,
            issued_at=NOW - timedelta(minutes=1),
            expires_at=NOW + timedelta(days=1),
            previous_digest=bytes.fromhex(last.payload_sha256) if last else b"",
            records=records,
            next_signing_key=announce,
        )

    def push(self, data: bytes, signers: Sequence[keys.SigningKey]) -> acc.Accepted:
        env = envelope.sign(snapshot.SNAPSHOT_PAYLOAD_TYPE, data, signers)
        accepted = acc.accept(
            env,
            tls_party="jprs",
            policy=policy(),
            last=lambda party, pairing: self.last.get(pairing),
            now=NOW,
            rotations=lambda party: self.rotations,
        )
        header = accepted.snapshot.header
        self.last[header.pairing] = acc.LastAccepted(
            header.version, accepted.snapshot.payload_sha256
        )
        if accepted.rotation is not None:
            self.rotations.append(accepted.rotation)
        return accepted


def refused(error: type[SnapshotRejected], message: str, server: Server, *args: object) -> None:
    before = (dict(server.last), list(server.rotations))
    with pytest.raises(
        error, match=f"^{re.escape(f'snapshot rejected [{error.rule}]: {message}')}$"
    ):
        server.push(*args)  # type: ignore[arg-type]
    assert (server.last, server.rotations) == before  # nothing recorded


@pytest.fixture
def rotated(records: list[CertRecord]) -> Server:
    """jprs pushed version 1 with its pinned key, then version 2 announcing NEW, signed by both."""
    server = Server()
    server.push(server.payload(records), [OLD])
    accepted = server.push(server.payload(records, announce=NEW.public.spki_der), [OLD, NEW])
    assert accepted.rotation is not None
    assert (accepted.rotation.version, accepted.rotation.new_key) == (2, NEW.public)
    assert accepted.rotation.old_keys == (OLD.public,)
    return server


def test_after_the_switch_the_new_key_alone_signs(
    rotated: Server, records: list[CertRecord]
) -> None:
    accepted = rotated.push(rotated.payload(records), [NEW])
    assert accepted.snapshot.header.version == 3
    assert accepted.rotation is None


def test_after_the_switch_the_old_key_alone_is_refused(
    rotated: Server, records: list[CertRecord]
) -> None:
    refused(
        RetiredKeyError,
        f"version 3 of party 'jprs' in pairing 'secom-jprs' is signed by key {OLD.keyid[:16]} "
        f"alone, which the party replaced with key {NEW.keyid[:16]} at version 2",
        rotated,
        rotated.payload(records),
        [OLD],
    )


def test_a_new_key_alone_without_an_announcement_is_refused(records: list[CertRecord]) -> None:
    server = Server()
    server.push(server.payload(records), [OLD])
    refused(
        UntrustedSignerError,
        f"no signature by a key pinned for party 'jprs' (signed by: {NEW.keyid})",
        server,
        server.payload(records),
        [NEW],
    )


def test_an_announcement_the_new_key_did_not_sign_is_refused(records: list[CertRecord]) -> None:
    server = Server()
    server.push(server.payload(records), [OLD])
    refused(
        KeyAnnouncementError,
        f"party 'jprs' announces key {NEW.keyid[:16]} in version 2 of pairing 'secom-jprs', "
        "but that key did not sign it",
        server,
        server.payload(records, announce=NEW.public.spki_der),
        [OLD],
    )


def test_an_announcement_signed_by_the_new_key_alone_is_refused(
    records: list[CertRecord],
) -> None:
    server = Server()
    refused(
        UntrustedSignerError,
        f"no signature by a key pinned for party 'jprs' (signed by: {NEW.keyid})",
        server,
        server.payload(records, announce=NEW.public.spki_der),
        [NEW],
    )


def test_an_announced_key_that_is_not_a_key_is_refused(records: list[CertRecord]) -> None:
    server = Server()
    with pytest.raises(KeyAnnouncementError, match="announces a key that is not a usable public"):
        server.push(server.payload(records, announce=b"not a key"), [OLD])
    assert server.last == {} and server.rotations == []


def test_a_retired_key_cannot_be_announced_again(
    rotated: Server, records: list[CertRecord]
) -> None:
    refused(
        KeyAnnouncementError,
        f"party 'jprs' announces key {OLD.keyid[:16]}, which it retired in pairing "
        "'secom-jprs' at version 2",
        rotated,
        rotated.payload(records, announce=OLD.public.spki_der),
        [NEW, OLD],
    )


def test_a_second_rotation_retires_the_first_new_key(
    rotated: Server, records: list[CertRecord]
) -> None:
    rotated.push(rotated.payload(records, announce=NEWER.public.spki_der), [NEW, NEWER])
    rotated.push(rotated.payload(records), [NEWER])
    refused(
        RetiredKeyError,
        f"version 5 of party 'jprs' in pairing 'secom-jprs' is signed by key {NEW.keyid[:16]} "
        f"alone, which the party replaced with key {NEWER.keyid[:16]} at version 3",
        rotated,
        rotated.payload(records),
        [NEW],
    )


def test_an_announcement_of_the_key_already_in_force_rotates_nothing(
    rotated: Server, records: list[CertRecord]
) -> None:
    accepted = rotated.push(rotated.payload(records, announce=NEW.public.spki_der), [NEW])
    assert accepted.rotation is None
    assert len(rotated.rotations) == 1


def test_a_rotation_switches_only_the_pairing_it_was_announced_in(
    rotated: Server, records: list[CertRecord]
) -> None:
    rotated.push(rotated.payload(records, pairing=OTHER), [OLD])  # the old key still signs here
    refused(
        UntrustedSignerError,
        "no signature by a key in force for party 'jprs' in pairing 'secom-jprs-2'; a new key "
        "must first be announced in a snapshot signed by both the current and the new key "
        f"(signed by: {NEW.keyid[:16]})",
        rotated,
        rotated.payload(records, pairing=OTHER),
        [NEW],
    )
    accepted = rotated.push(
        rotated.payload(records, pairing=OTHER, announce=NEW.public.spki_der), [OLD, NEW]
    )
    assert accepted.rotation is not None and accepted.rotation.pairing == OTHER


def test_a_duplicate_of_the_announcement_is_still_accepted_with_its_old_signature(
    records: list[CertRecord],
) -> None:
    server = Server()
    server.push(server.payload(records), [OLD])
    announcing = server.payload(records, announce=NEW.public.spki_der)
    server.push(announcing, [OLD, NEW])
    server.last[PAIRING] = acc.LastAccepted(2, hashlib.sha256(announcing).hexdigest())
    again = server.push(announcing, [OLD, NEW])  # a lost receipt: the same bytes again
    assert again.duplicate


def test_keys_by_version_let_a_peer_verify_history() -> None:
    rotation = Rotation("jprs", PAIRING, 5, NEW.public, (OLD.public,))
    ring = KeyRing("jprs", {NEW.keyid: NEW.public}, (rotation,))  # the operator re-pinned NEW
    assert set(ring.keys_for(PAIRING, 4)) == {NEW.keyid, OLD.keyid}
    assert set(ring.keys_for(PAIRING, 5)) == {NEW.keyid, OLD.keyid}
    assert set(ring.keys_for(PAIRING, 6)) == {NEW.keyid}
    assert set(ring.keys_for(PAIRING)) == {NEW.keyid}
    assert set(ring.known()) == {NEW.keyid, OLD.keyid}


def test_a_key_pinned_out_of_band_wins_over_a_rotation_from_a_key_no_longer_pinned() -> None:
    # OLD leaked and its holder announced NEWER; the operators then pinned NEW by hand.
    stolen = Rotation("jprs", PAIRING, 5, NEWER.public, (OLD.public,))
    ring = KeyRing("jprs", {NEW.keyid: NEW.public}, (stolen,))
    assert set(ring.keys_for(PAIRING)) == {NEW.keyid}
    assert set(ring.known()) == {NEW.keyid}
    assert ring.retired_by(PAIRING, OLD.keyid) is None
    # Pinned as before, the recorded rotation stands.
    assert set(KeyRing("jprs", {OLD.keyid: OLD.public}, (stolen,)).keys_for(PAIRING)) == {
        NEWER.keyid
    }


def test_the_peer_agent_applies_the_same_rules(rotated: Server, records: list[CertRecord]) -> None:
    jprs = acc.PartyPolicy("jprs", {OLD.keyid: OLD.public})
    old_alone = envelope.sign(snapshot.SNAPSHOT_PAYLOAD_TYPE, rotated.payload(records), [OLD])
    with pytest.raises(RetiredKeyError, match=r"signed by key \w+ alone, which the party replaced"):
        acc.verify_peer_snapshot(
            old_alone, peer=jprs, pairing=PAIRING, now=NOW, rotations=rotated.rotations
        )
    new_alone = envelope.sign(snapshot.SNAPSHOT_PAYLOAD_TYPE, rotated.payload(records), [NEW])
    with pytest.raises(UntrustedSignerError, match="no signature by a key pinned for party"):
        acc.verify_peer_snapshot(new_alone, peer=jprs, pairing=PAIRING, now=NOW)
    peer = acc.verify_peer_snapshot(
        new_alone, peer=jprs, pairing=PAIRING, now=NOW, rotations=rotated.rotations
    )
    assert peer.header.version == 3


def test_a_rotation_survives_a_database_row() -> None:
    rotation = Rotation("jprs", PAIRING, 7, NEW.public, (OLD.public, NEWER.public))
    assert rotation_from_row(rotation_row(rotation, "2021-03-01T12:00:00Z")) == rotation
