"""An agent's trust in the exchange server's keys across an in-band rotation: receipts and
reports by the new key only once its announcement was followed, a retired key signing alone
after the rotation refused, and the follower that reads, proves and records the announcement
(persisted with the checkpoint it was proven in)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.restore import Restore, reported_version
from invsync.agent.daemon.rotation import OwnKeys
from invsync.agent.daemon.server_key_follow import ServerKeyFollow, no_known_server_signer
from invsync.agent.exchange import envelope, tlog
from invsync.agent.exchange.acceptance import PartyPolicy
from invsync.agent.exchange.chain_reset import ChainReset, sign_chain_reset
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.keys import SigningKey, generate
from invsync.agent.exchange.log_entry import canonical_envelope, log_entry
from invsync.agent.exchange.rejections import (
    LogInconsistentError,
    LogSplitViewError,
    RetiredServerKeyError,
    ServerKeyAnnouncementError,
    ServerSignatureError,
)
from invsync.agent.exchange.server_key import (
    SERVER_KEY_PAYLOAD_TYPE,
    ServerKeyAnnouncement,
    server_key_entry,
)
from invsync.agent.exchange.server_keyring import ServerKeyRing, ServerRotation
from invsync.agent.exchange.trusted import LogCheckpoint, PairingTrust, SharedLog, TrustedState
from invsync.agent.model.snapshot import SUBORDINATE
from invsync.agent.report.body import ReportBody
from invsync.agent.store.agent_store import AgentStore
from invsync.v1 import invsync_pb2 as pb
from tests.evidence_rig import MemoryLog
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys
from tests.headers import header
from tests.trusted_helpers import OWN, POLICY, REPORTS, receipt, report

NEW = generate()
AT = datetime(2021, 3, 1, 11, 0, tzinfo=UTC)


def _trust(keys: Keys, *rotations: ServerRotation) -> PairingTrust[ReportBody]:
    """secom's trusted state, its server keys the pinned one and `rotations` followed."""
    ring = ServerKeyRing({keys.server.keyid: keys.server.public}, rotations)
    return PairingTrust(
        party="secom",
        pairing=POLICY,
        server_keys=ring,
        peer=PartyPolicy("jprs", {keys.jprs.keyid: keys.jprs.public}),
        reports=REPORTS,
        shared=SharedLog(SERVER),
    )


def _rotated(keys: Keys, index: int = 4) -> ServerRotation:
    return ServerRotation(index, NEW.public, keys.server.public, AT)


def _receipt(
    key: SigningKey, *, log_index: int, size: int, note_key: SigningKey | None = None
) -> envelope.Envelope:
    note = sign_checkpoint(Checkpoint(SERVER, size, b"\x01" * 32), SERVER, note_key or key)
    return receipt(key, log_index=log_index, checkpoint=note)


def test_a_receipt_by_a_key_never_announced_is_refused(keys: Keys) -> None:
    with pytest.raises(ServerSignatureError) as refused:
        _trust(keys).update_receipt(_receipt(NEW, log_index=6, size=8), version=1, payload=OWN)
    assert str(refused.value) == (
        "refused [bad-server-signature]: the exchange server (receipt): 0 of 1 required "
        f"signatures verified; signed by untrusted key {NEW.keyid}"
    )


def test_after_the_rotation_the_new_key_signs_and_the_old_one_did_before(keys: Keys) -> None:
    trust = _trust(keys, _rotated(keys))
    env = _receipt(NEW, log_index=6, size=8)
    assert trust.update_receipt(env, version=1, payload=OWN).log_index == 6
    before = _trust(keys, _rotated(keys))
    assert (
        before.update_receipt(
            _receipt(keys.server, log_index=2, size=3), version=1, payload=OWN
        ).log_index
        == 2
    )


def test_the_retired_key_signing_alone_after_the_rotation_is_refused(keys: Keys) -> None:
    trust = _trust(keys, _rotated(keys))
    with pytest.raises(RetiredServerKeyError) as refused:
        trust.update_receipt(_receipt(keys.server, log_index=6, size=8), version=1, payload=OWN)
    assert str(refused.value) == (
        "refused [retired-server-key]: the receipt for secom's version 1 is signed by server "
        f"key {keys.server.keyid[:16]} alone, which the server replaced with key "
        f"{NEW.keyid[:16]} at log entry 4"
    )
    assert trust.state == TrustedState(origin=SERVER)  # nothing taken


def test_a_receipt_whose_checkpoint_the_retired_key_signed_is_refused(keys: Keys) -> None:
    env = _receipt(NEW, log_index=6, size=8, note_key=keys.server)
    with pytest.raises(RetiredServerKeyError) as refused:
        _trust(keys, _rotated(keys)).update_receipt(env, version=1, payload=OWN)
    assert str(refused.value) == (
        "refused [retired-server-key]: the checkpoint of tree size 8 is signed by server key "
        f"{keys.server.keyid[:16]} alone, which the server replaced with key {NEW.keyid[:16]} "
        "at log entry 4"
    )


def test_a_report_by_the_new_key_needs_the_rotation_followed(keys: Keys) -> None:
    old = report(keys)
    new = envelope.sign(old.payload_type, old.payload, [NEW])
    assert no_known_server_signer(new, _trust(keys))
    with pytest.raises(ServerSignatureError, match="signed by untrusted key"):
        _trust(keys).verify_report(new)
    followed = _trust(keys, _rotated(keys))
    assert not no_known_server_signer(new, followed)
    assert followed.verify_report(new).pairing == PAIRING
    # Made before the rotation: history, named by a report the new key signed; never a report
    # to act on now.
    assert followed.verify_report(old, made_now=False).pairing == PAIRING
    with pytest.raises(RetiredServerKeyError) as refused:
        followed.verify_report(old)
    assert str(refused.value) == (
        "refused [retired-server-key]: the server's report served now is signed by server key "
        f"{keys.server.keyid[:16]} alone, which the server replaced with key {NEW.keyid[:16]} "
        "at log entry 4"
    )


class _Served:
    """The server's latest report, as ExchangeClient.report answers it."""

    def __init__(self, env: envelope.Envelope) -> None:
        self.env = env

    def report(self, pairing: str) -> pb.Report:
        assert pairing == PAIRING
        return pb.Report(report_id="", envelope=self.env.to_pb())


def test_after_a_leak_and_a_re_pin_the_leaked_keys_report_tells_nothing(keys: Keys) -> None:
    # The server's key leaked and was rotated to NEW; the party pinned NEW alone by hand. The
    # leaked key signs a report naming a version of ours far ahead.
    leaked = report(keys)
    repinned = PairingTrust(
        party="secom",
        pairing=POLICY,
        server_keys=ServerKeyRing({NEW.keyid: NEW.public}, (_rotated(keys),)),
        peer=PartyPolicy("jprs", {keys.jprs.keyid: keys.jprs.public}),
        reports=REPORTS,
        shared=SharedLog(SERVER),
    )
    assert keys.server.keyid in repinned.server_ring.known()  # it did sign, before the leak
    client = cast(ExchangeClient, _Served(leaked))
    assert reported_version(client, repinned, "root") == 0
    signed_now = envelope.sign(leaked.payload_type, leaked.payload, [NEW])
    assert reported_version(cast(ExchangeClient, _Served(signed_now)), repinned, "root") == 1


class _Log(MemoryLog):
    """A log of `leaves` whose checkpoints `signers[size]` sign, served to the follower."""

    def __init__(self, leaves: list[bytes], signers: dict[int, list[SigningKey]]) -> None:
        self.by_size = signers  # a test may change who signs a size
        super().__init__(leaves, lambda size: self.by_size[size])

    def held(self, size: int) -> LogCheckpoint:
        note = self.checkpoint(size)
        return LogCheckpoint(size, tlog.root(self.hashes[:size]), note)


def _other_entry() -> bytes:
    return pb.LogEntry(kind=pb.LOG_ENTRY_KIND_REPORT, pairing="other").SerializeToString()


def _log(keys: Keys, announcement: pb.LogEntry) -> _Log:
    leaves = [_other_entry(), announcement.SerializeToString(), _other_entry()]
    return _Log(leaves, {1: [keys.server], 2: [keys.server, NEW], 3: [NEW]})


def _announce(keys: Keys) -> pb.LogEntry:
    body = ServerKeyAnnouncement(SERVER, NEW.public, keys.server.public, AT)
    return server_key_entry(body, keys.server, NEW)


def _held_trust(keys: Keys, log: _Log, store: AgentStore) -> PairingTrust[ReportBody]:
    trust = _trust(keys)
    with trust.staged() as staged:
        staged.replace_checkpoint(log.held(1))
        store.record_checkpoint(PAIRING, staged.state, NOW)
    return trust


def test_the_follower_proves_records_and_keeps_the_rotation(keys: Keys, tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "secom.db")
    log = _log(keys, _announce(keys))
    trust = _held_trust(keys, log, store)
    assert ServerKeyFollow("secom", store, lambda: NOW).follow(log, trust) == 1
    assert set(trust.server_ring.keys_at(None)) == {NEW.keyid}
    assert trust.state.checkpoint == log.held(1)  # the watch holds more once it checked the entries
    assert ServerKeyFollow("secom", store, lambda: NOW).follow(log, trust) == 0  # once
    store.close()
    reopened = AgentStore(tmp_path / "secom.db")  # a restarted agent
    try:
        (kept,) = reopened.server_rotations()
        assert (kept.index, kept.new_key.keyid, kept.old_key.keyid) == (
            1,
            NEW.keyid,
            keys.server.keyid,
        )
        assert kept.announced_at == AT
        held = reopened.trusted_state(PAIRING).checkpoint
        assert held is not None and held.size == 1
    finally:
        reopened.close()


def test_an_announcement_the_retiring_key_did_not_sign_is_refused_and_nothing_kept(
    keys: Keys, tmp_path: Path
) -> None:
    forged = _announce(keys)
    body = envelope.Envelope.from_json_dict(json.loads(forged.envelope)).payload
    forged.envelope = canonical_envelope(envelope.sign(SERVER_KEY_PAYLOAD_TYPE, body, [NEW]))
    log = _log(keys, forged)
    store = AgentStore(tmp_path / "secom.db")
    try:
        trust = _held_trust(keys, log, store)
        with pytest.raises(ServerKeyAnnouncementError) as refused:
            ServerKeyFollow("secom", store, lambda: NOW).follow(log, trust)
        assert str(refused.value) == (
            "refused [bad-server-key-announcement]: log entry 1 announces a new server key, but "
            f"no server key in force there signed it (signed by: {NEW.keyid})"
        )
        assert store.server_rotations() == []
        assert set(trust.server_ring.known()) == {keys.server.keyid}
        assert trust.state.checkpoint == log.held(1)
    finally:
        store.close()


def test_an_announcement_under_a_checkpoint_the_new_key_alone_signed_is_refused(
    keys: Keys, tmp_path: Path
) -> None:
    log = _log(keys, _announce(keys))
    log.by_size[2] = [NEW]  # the key it retires did not sign the tree ending with it
    store = AgentStore(tmp_path / "secom.db")
    try:
        trust = _held_trust(keys, log, store)
        with pytest.raises(LogInconsistentError) as refused:
            ServerKeyFollow("secom", store, lambda: NOW).follow(log, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 1 (the server's key "
            "announcement): its checkpoint: checkpoint of test-exchange: no signature by a "
            "pinned key verifies"
        )
        assert store.server_rotations() == []
    finally:
        store.close()


def _watched(keys: Keys, log: _Log, store: AgentStore) -> tuple[LogWatch, PairingTrust[ReportBody]]:
    return LogWatch(party="secom", store=store, clock=lambda: NOW), _held_trust(keys, log, store)


def _retired_alone(keys: Keys, size: int) -> str:
    return (
        f"refused [retired-server-key]: the checkpoint of tree size {size} is signed by server "
        f"key {keys.server.keyid[:16]} alone, which the server replaced with key "
        f"{NEW.keyid[:16]} at log entry 1"
    )


def test_the_watch_follows_first_then_refuses_a_later_checkpoint_the_retired_key_signed(
    keys: Keys, tmp_path: Path
) -> None:
    # The pass that first meets the rotation: the latest checkpoint, past the announcement,
    # opens with the old key while it is the only one known here.
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _other_entry(), _other_entry()]
    log = _Log(
        leaves, {1: [keys.server], 2: [keys.server, NEW], 3: [keys.server], 4: [keys.server]}
    )
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        with pytest.raises(RetiredServerKeyError) as refused:
            watch.check(log, trust)
        assert str(refused.value) == _retired_alone(keys, 4)
        assert trust.state.checkpoint == log.held(1)  # never size 4
        held = store.trusted_state(PAIRING).checkpoint
        assert held is not None and held.size == 1
        assert [r.index for r in store.server_rotations()] == [1]
        log.by_size[4] = [NEW]  # the server signs with the key in force: held
        assert watch.check(log, trust).size == 4
    finally:
        store.close()


def _reset_entry(key: SigningKey) -> bytes:
    reset = ChainReset(SERVER, "jprs", PAIRING, 0, (1,), "a misused key", NOW)
    signed = sign_chain_reset(reset, key)
    entry = log_entry(pb.LOG_ENTRY_KIND_CHAIN_RESET, signed, party="jprs", pairing=PAIRING)
    return entry.SerializeToString()


@pytest.mark.parametrize("signer", ["retired", "new"])
def test_a_chain_reset_after_the_rotation_is_judged_with_the_key_in_force_there(
    keys: Keys, tmp_path: Path, signer: str
) -> None:
    key = keys.server if signer == "retired" else NEW
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _reset_entry(key)]
    # Both keys sign the latest checkpoint: it opens with the old key alone too, so the watch
    # would judge the reset with the old key unless it follows the rotation first.
    log = _Log(leaves, {1: [keys.server], 2: [keys.server, NEW], 3: [keys.server, NEW]})
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        if signer == "new":
            assert watch.check(log, trust).size == 3
            assert trust.state.checkpoint == log.held(3)
            return
        with pytest.raises(LogInconsistentError) as refused:
            watch.check(log, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: the chain reset at log entry 2: "
            f"0 of 1 required signatures verified; signed by untrusted key {keys.server.keyid}"
        )
        assert trust.state.checkpoint == log.held(1)
    finally:
        store.close()


def test_the_restore_follows_first_and_refuses_the_retired_keys_checkpoint(
    keys: Keys, tmp_path: Path
) -> None:
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _other_entry()]
    log = _Log(leaves, {1: [keys.server], 2: [keys.server, NEW], 3: [keys.server]})
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        restore = Restore(
            party="secom", keys=OwnKeys(keys.secom), store=store, watch=watch, clock=lambda: NOW
        )
        with pytest.raises(RetiredServerKeyError) as refused:
            restore.restore(log, trust, "the push was refused as a rollback")
        assert str(refused.value) == _retired_alone(keys, 3)
        assert trust.state.checkpoint == log.held(1)
    finally:
        store.close()


def _two_rotations(keys: Keys, third: SigningKey) -> _Log:
    """A log where the server's key went from the pinned one to NEW (entry 1), then to
    `third` (entry 3)."""
    second = server_key_entry(
        ServerKeyAnnouncement(SERVER, third.public, NEW.public, AT), NEW, third
    )
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _other_entry()]
    leaves += [second.SerializeToString(), _other_entry()]
    return _Log(
        leaves,
        {1: [keys.server], 2: [keys.server, NEW], 3: [NEW], 4: [NEW, third], 5: [third]},
    )


def _pinning(keys: Keys, key: SigningKey) -> PairingTrust[ReportBody]:
    return PairingTrust(
        party="secom",
        pairing=POLICY,
        server_keys=ServerKeyRing({key.keyid: key.public}),
        peer=PartyPolicy("jprs", {keys.jprs.keyid: keys.jprs.public}),
        reports=REPORTS,
        shared=SharedLog(SERVER),
    )


def test_an_agent_that_pins_the_key_in_force_after_two_rotations_starts_from_its_pin(
    keys: Keys, tmp_path: Path
) -> None:
    third = generate()
    log = _two_rotations(keys, third)
    store = AgentStore(tmp_path / "secom.db")
    try:
        trust = _pinning(keys, third)  # a party joining now, or a database rebuilt
        watch = LogWatch(party="secom", store=store, clock=lambda: NOW)
        assert watch.check(log, trust).size == 5
        (kept,) = store.server_rotations()  # the first, from before the pin, is not followed
        assert (kept.index, kept.old_key.keyid, kept.new_key.keyid) == (3, NEW.keyid, third.keyid)
        assert set(trust.server_ring.keys_at(None)) == {third.keyid}
        log.leaves.append(_other_entry())  # and the next cycles go on
        log.hashes.append(tlog.leaf_hash(log.leaves[-1]))
        log.by_size[6] = [third]
        assert watch.check(log, trust).size == 6
    finally:
        store.close()


def test_a_pin_no_checkpoint_of_the_log_opens_with_is_still_refused(
    keys: Keys, tmp_path: Path
) -> None:
    log = _two_rotations(keys, generate())
    log.by_size[5] = [NEW]  # the latest checkpoint too: nothing the pinned key signed
    store = AgentStore(tmp_path / "secom.db")
    try:
        trust = _pinning(keys, generate())
        with pytest.raises(LogInconsistentError) as refused:
            LogWatch(party="secom", store=store, clock=lambda: NOW).check(log, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 1 (the server's key "
            "announcement): its checkpoint: checkpoint of test-exchange: no signature by a "
            "pinned key verifies"
        )
        assert store.server_rotations() == []
    finally:
        store.close()


def test_a_peer_checkpoint_by_a_key_not_followed_yet_is_followed_then_compared(
    keys: Keys, tmp_path: Path
) -> None:
    log = _log(keys, _announce(keys))  # jprs saw checkpoint 3, signed by the new key alone
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        peer = replace(
            header("jprs", PAIRING, NOW, role=SUBORDINATE), log_checkpoint=log.checkpoint(3)
        )
        watch.check_peer_view(log, trust, peer)  # no log-split-view
        assert [r.index for r in store.server_rotations()] == [1]
        forked = replace(
            peer, log_checkpoint=sign_checkpoint(Checkpoint(SERVER, 3, b"\x02" * 32), SERVER, NEW)
        )
        with pytest.raises(LogSplitViewError, match="they are not of one log"):
            watch.check_peer_view(log, trust, forked)
    finally:
        store.close()


def test_a_rotation_followed_outside_the_watch_leaves_the_entries_before_it_to_the_watch(
    keys: Keys, tmp_path: Path
) -> None:
    # A push met the new key on its receipt and followed the rotation: the entries between the
    # checkpoint held and the announcement are still the log watch's to check.
    foreign = pb.LogEntry(
        kind=pb.LOG_ENTRY_KIND_SNAPSHOT, party="secom", pairing=PAIRING, version=5
    ).SerializeToString()
    leaves = [_other_entry(), foreign, _announce(keys).SerializeToString(), _other_entry()]
    log = _Log(leaves, {1: [keys.server], 2: [keys.server], 3: [keys.server, NEW], 4: [NEW]})
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        assert ServerKeyFollow("secom", store, lambda: NOW).follow(log, trust) == 1
        assert trust.state.checkpoint == log.held(1)  # the rotation is kept, not a checkpoint
        with pytest.raises(LogInconsistentError) as refused:
            watch.check(log, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 1 is a SNAPSHOT entry "
            f"signed as secom (pairing {PAIRING!r}, version 5, report -) that this agent did "
            "not make"
        )
    finally:
        store.close()


def test_a_server_stripping_the_old_keys_signature_cannot_make_an_agent_skip_its_rotation(
    keys: Keys, tmp_path: Path
) -> None:
    # The agent pins the key the log starts with. Served the announcement's checkpoint without
    # that key's signature, and a later checkpoint signed by it, the agent must not take the
    # announcement for history from before its pin (and keep trusting the retired key).
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _other_entry(), _other_entry()]
    log = _Log(leaves, {1: [keys.server], 2: [NEW], 3: [keys.server], 4: [keys.server]})
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, log, store)
        with pytest.raises(LogInconsistentError) as refused:
            watch.check(log, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 1 (the server's key "
            f"announcement): its checkpoint: checkpoint of {SERVER}: no signature by a pinned "
            "key verifies"
        )
        assert trust.state.checkpoint == log.held(1) and store.server_rotations() == []
    finally:
        store.close()


def test_a_rotation_followed_from_one_tree_must_be_in_the_tree_the_watch_holds_next(
    keys: Keys, tmp_path: Path
) -> None:
    # Followed from the checkpoint a receipt came with (a tree holding the announcement at
    # entry 1); the log watch is then served another tree of the same start, without it.
    leaves = [_other_entry(), _announce(keys).SerializeToString(), _other_entry()]
    followed = _Log(leaves, {1: [keys.server], 2: [keys.server, NEW], 3: [NEW]})
    other = pb.LogEntry(kind=pb.LOG_ENTRY_KIND_REPORT, pairing="another").SerializeToString()
    forked = _Log([_other_entry(), other, _other_entry(), _other_entry()], {4: [NEW], 1: [NEW]})
    store = AgentStore(tmp_path / "secom.db")
    try:
        watch, trust = _watched(keys, followed, store)
        assert ServerKeyFollow("secom", store, lambda: NOW).follow(followed, trust) == 1
        with pytest.raises(LogInconsistentError) as refused:
            watch.check(forked, trust)
        assert str(refused.value) == (
            f"refused [log-inconsistent]: pairing {PAIRING!r}: log entry 1 (the server's key "
            f"announcement followed): the log of size 4 holds no announcement of server key "
            f"{NEW.keyid[:16]} there, which this agent followed"
        )
        assert trust.state.checkpoint == followed.held(1)  # nothing of the fork held
        # The same tree as followed is held.
        assert watch.check(followed, trust).size == 3
    finally:
        store.close()
