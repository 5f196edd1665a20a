"""agent/exchange/trusted.py: every input of a pairing passes one trusted state, in order
(payload type, a pinned key's signature, parsing, agreement with what was verified before), and
a refused input changes nothing.

Real keys, real snapshot payloads of the JPRS certificates, receipts and reports signed the way
the server signs them; no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from invsync.agent.exchange import acceptance, envelope, trusted
from invsync.agent.exchange.acceptance import PartyPolicy
from invsync.agent.exchange.chain_reset import ChainReset
from invsync.agent.exchange.envelope import Envelope
from invsync.agent.exchange.receipt import RECEIPT_PAYLOAD_TYPE, decode_receipt
from invsync.agent.exchange.record_codec import timestamp
from invsync.agent.exchange.rejections import (
    BadSignatureError,
    CheckpointRollbackError,
    ExpiredError,
    LogInconsistentError,
    MalformedInput,
    PayloadTypeError,
    PeerEquivocationError,
    PeerRollbackError,
    PeerVersionMismatchError,
    ReceiptMismatchError,
    ReportMismatchError,
    ServerSignatureError,
    UntrustedInput,
    UntrustedSignerError,
)
from invsync.agent.exchange.snapshot import SNAPSHOT_PAYLOAD_TYPE, decode_payload
from invsync.agent.exchange.trusted import (
    DocumentFormat,
    LogCheckpoint,
    PairingTrust,
    TrustedState,
    Verified,
)
from invsync.agent.model.findings import Severity
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import (
    REPORT_PAYLOAD_TYPE,
    ReportBody,
    parse_report_body,
    report_id,
)
from tests.exchange_rig import NOW, PAIRING, SERVER, Keys, payload
from tests.trusted_helpers import OWN, POLICY, REPORTS, jprs, make_trust, receipt, report


@dataclass
class Calls:
    """How often a monkeypatched function ran: the order of the checks, observed."""

    count: int = 0

    def counting(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return function(*args, **kwargs)

        return wrapper


@pytest.fixture
def trust(keys: Keys) -> PairingTrust[ReportBody]:
    """secom's trusted state of its pairing with jprs: nothing verified yet."""
    return make_trust(keys)


@contextmanager
def refused(
    trust: PairingTrust[ReportBody], error: type[Exception], message: str
) -> Iterator[pytest.ExceptionInfo[Exception]]:
    """The block raises `error` with `message` and leaves the trusted state as it was."""
    before = (trust.state, trust.rotations)
    with pytest.raises(error, match=re.escape(message)) as info:
        yield info
    assert (trust.state, trust.rotations) == before


# --- receipts ---------------------------------------------------------------------------------


def test_a_receipt_for_the_snapshot_pushed_is_kept_with_our_version(
    trust: PairingTrust[ReportBody], keys: Keys
) -> None:
    env = receipt(keys.server, version=3)
    got = trust.update_receipt(env, version=3, payload=OWN)
    assert (got.party, got.pairing, got.version) == ("secom", PAIRING, 3)
    assert trust.state.own == Verified(3, hashlib.sha256(OWN).hexdigest())
    assert trust.state.receipts == {3: env}


def test_a_signed_report_served_as_a_receipt_is_refused_before_its_signature_is_checked(
    trust: PairingTrust[ReportBody], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server signs reports with the same key: by its signature alone, any of them passes.
    verified = Calls()
    monkeypatch.setattr(envelope, "verify", verified.counting(envelope.verify))
    message = (
        f"receipt for version 1: payload type {REPORT_PAYLOAD_TYPE!r} "
        f"is not {RECEIPT_PAYLOAD_TYPE!r}"
    )
    with refused(trust, PayloadTypeError, message) as info:
        trust.update_receipt(report(keys), version=1, payload=OWN)
    assert verified.count == 0
    assert str(info.value).startswith("refused [wrong-payload-type]: ")


def test_a_receipt_not_signed_by_a_pinned_server_key_is_refused_before_it_is_parsed(
    trust: PairingTrust[ReportBody], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = Calls()
    monkeypatch.setattr(trusted, "decode_receipt", decoded.counting(decode_receipt))
    message = (
        "the exchange server (receipt): 0 of 1 required signatures verified; "
        f"signed by untrusted key {keys.stranger.keyid}"
    )
    with refused(trust, ServerSignatureError, message):
        trust.update_receipt(receipt(keys.stranger), version=1, payload=OWN)
    tampered = replace(receipt(keys.server), payload=receipt(keys.server, version=2).payload)
    message = f"invalid signature by trusted key {keys.server.keyid}"
    with refused(trust, ServerSignatureError, message):
        trust.update_receipt(tampered, version=2, payload=OWN)
    assert decoded.count == 0


def test_a_signed_receipt_that_does_not_parse_is_malformed(
    trust: PairingTrust[ReportBody], keys: Keys
) -> None:
    garbage = envelope.sign(RECEIPT_PAYLOAD_TYPE, b"\xff\xff not protobuf", [keys.server])
    with refused(trust, MalformedInput, "receipt: payload is not a ReceiptBody"):
        trust.update_receipt(garbage, version=1, payload=OWN)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"version": 2}, "version 2 (pushed 1)"),
        ({"party": "jprs"}, "party 'jprs' (pushed 'secom')"),
        ({"pairing": "secom-other"}, f"pairing 'secom-other' (pushed {PAIRING!r})"),
        (
            {"data": b"other bytes"},
            f"payload_sha256 {hashlib.sha256(b'other bytes').hexdigest()!r} "
            f"(pushed {hashlib.sha256(OWN).hexdigest()!r})",
        ),
    ],
    ids=["version", "party", "pairing", "digest"],
)
def test_a_receipt_for_another_snapshot_is_refused_naming_what_differs(
    trust: PairingTrust[ReportBody], keys: Keys, changes: dict[str, Any], named: str
) -> None:
    message = (
        f"refused [receipt-mismatch]: the receipt for secom's snapshot version 1 of pairing "
        f"{PAIRING!r} names {named}"
    )
    with refused(trust, ReceiptMismatchError, message) as info:
        trust.update_receipt(receipt(keys.server, **changes), version=1, payload=OWN)
    assert str(info.value) == message


def test_a_receipt_ignores_fields_it_does_not_check(
    trust: PairingTrust[ReportBody], keys: Keys
) -> None:
    # The acceptance time is the server's to say; the log fields are checked below.
    later = receipt(keys.server, accepted_at=timestamp(NOW + timedelta(days=3)))
    assert trust.update_receipt(later, version=1, payload=OWN).accepted_at == NOW + timedelta(
        days=3
    )


# --- reports ----------------------------------------------------------------------------------


def test_a_report_signed_by_the_pinned_server_key_is_parsed(
    trust: PairingTrust[ReportBody], keys: Keys
) -> None:
    env = report(keys)
    body = trust.verify_report(env, report_id=report_id(env.payload))
    assert (body.pairing, body.report_id) == (PAIRING, report_id(env.payload))
    assert trust.state == TrustedState()  # a report holds nothing of its own


def test_a_receipt_served_as_a_report_is_refused_by_its_type(
    trust: PairingTrust[ReportBody], keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified = Calls()
    monkeypatch.setattr(envelope, "verify", verified.counting(envelope.verify))
    message = f"payload type {RECEIPT_PAYLOAD_TYPE!r} is not {REPORT_PAYLOAD_TYPE!r}"
    with refused(trust, PayloadTypeError, message):
        trust.verify_report(receipt(keys.server))
    assert verified.count == 0


def test_a_report_is_not_parsed_before_the_server_signature_verifies(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = Calls()
    counting = DocumentFormat(REPORT_PAYLOAD_TYPE, parsed.counting(parse_report_body))
    trust = PairingTrust(
        party="secom",
        pairing=POLICY,
        server_keys={keys.server.keyid: keys.server.public},
        peer=PartyPolicy("jprs", {keys.jprs.keyid: keys.jprs.public}),
        reports=counting,
    )
    # Signed by jprs's key, which the report lists about itself: no trust anchor for a report.
    by_party = envelope.sign(REPORT_PAYLOAD_TYPE, report(keys).payload, [keys.jprs])
    message = (
        "the exchange server (report): 0 of 1 required signatures verified; "
        f"signed by untrusted key {keys.jprs.keyid}"
    )
    with refused(trust, ServerSignatureError, message):
        trust.verify_report(by_party)
    unsigned_garbage = Envelope(REPORT_PAYLOAD_TYPE, b"{not json")
    with refused(trust, ServerSignatureError, "no signatures"):
        trust.verify_report(unsigned_garbage)
    assert parsed.count == 0
    trust.verify_report(report(keys))
    assert parsed.count == 1


def test_a_signed_report_that_does_not_parse_or_names_another_pairing_is_refused(
    trust: PairingTrust[ReportBody], keys: Keys
) -> None:
    garbage = envelope.sign(REPORT_PAYLOAD_TYPE, b"{not json", [keys.server])
    message = f"report of pairing {PAIRING!r}: report body: not valid UTF-8 JSON"
    with refused(trust, MalformedInput, message):
        trust.verify_report(garbage)
    other = report(keys, pairing="secom-other")
    rid = report_id(other.payload)
    message = (
        f"the server served report (latest) of pairing {PAIRING!r}, but it is report {rid} "
        "of 'secom-other'"
    )
    with refused(trust, ReportMismatchError, message):
        trust.verify_report(other)
    message = f"the server served report {'0' * 64} of pairing {PAIRING!r}, but it is report "
    with refused(trust, ReportMismatchError, message):
        trust.verify_report(report(keys), report_id="0" * 64)


# --- the peer's snapshots ---------------------------------------------------------------------


def test_peer_snapshots_go_forward_and_the_last_verified_one_is_held(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    first = trust.update_peer(jprs(keys, records, 1), version=1, now=NOW)
    assert first.snapshot.header.version == 1 and first.rotation is None
    second = trust.update_peer(jprs(keys, records, 2), version=2, now=NOW)
    assert trust.state.peer == Verified(2, second.snapshot.payload_sha256)
    again = trust.update_peer(jprs(keys, records, 2), version=2, now=NOW)  # the same bytes
    assert again.snapshot == second.snapshot
    assert trust.state.peer == Verified(2, second.snapshot.payload_sha256)


def test_an_older_peer_snapshot_after_a_newer_one_is_a_rollback_finding(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    newer = trust.update_peer(jprs(keys, records, 2), version=2, now=NOW).snapshot
    message = (
        f"the exchange server served jprs's snapshot version 1 of pairing {PAIRING!r} after "
        f"version 2 ({newer.payload_sha256[:16]}) was verified here: rollback or freeze"
    )
    with refused(trust, PeerRollbackError, message) as info:
        trust.update_peer(jprs(keys, records, 1), version=1, now=NOW)
    error = info.value
    assert isinstance(error, UntrustedInput) and error.finding is not None
    assert (error.rule, error.finding.code, error.finding.severity) == (
        "peer-rollback",
        "peer-rollback",
        Severity.ERROR,
    )
    assert (error.finding.party, error.finding.message) == ("", message)


def test_an_old_peer_snapshot_is_a_rollback_even_when_it_has_expired(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    # Expiry is checked after the version, so an old snapshot is named for what it is.
    trust.update_peer(jprs(keys, records, 2), version=2, now=NOW)
    expired = jprs(keys, records, 1, expires_at=NOW - timedelta(minutes=1))
    with refused(trust, PeerRollbackError, "after version 2"):
        trust.update_peer(expired, version=1, now=NOW)
    newer_but_expired = jprs(keys, records, 3, expires_at=NOW - timedelta(minutes=1))
    with refused(trust, ExpiredError, "expired at 2021-03-01T11:59:00Z (now 2021-03-01T12:00:00Z)"):
        trust.update_peer(newer_but_expired, version=3, now=NOW)


def test_another_peer_snapshot_with_the_verified_version_is_equivocation(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    held = trust.update_peer(jprs(keys, records, 2), version=2, now=NOW).snapshot
    other = jprs(keys, records[1:], 2)
    digest = hashlib.sha256(other.payload).hexdigest()
    message = (
        f"jprs's snapshot version 2 of pairing {PAIRING!r} was verified here as "
        f"{held.payload_sha256[:16]}; the exchange server now serves {digest[:16]}: jprs "
        "signed two snapshots with one version"
    )
    with refused(trust, PeerEquivocationError, message) as info:
        trust.update_peer(other, version=2, now=NOW)
    finding = info.value.finding  # type: ignore[attr-defined]
    assert (finding.code, finding.party) == ("peer-rollback", "jprs")
    with refused(trust, PeerEquivocationError, message):  # an earlier fetch of it is no better
        trust.verify_earlier_peer(other, version=2)


def test_a_peer_snapshot_of_another_version_than_asked_for_is_refused(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    message = (
        f"asked for jprs's snapshot version 3 of pairing {PAIRING!r}, the server served version 2"
    )
    with refused(trust, PeerVersionMismatchError, message):
        trust.update_peer(jprs(keys, records, 2), version=3, now=NOW)
    with refused(trust, PeerVersionMismatchError, message):
        trust.verify_earlier_peer(jprs(keys, records, 2), version=3)


def test_a_peer_snapshot_is_checked_by_type_then_pinned_signature_then_parsed(
    trust: PairingTrust[ReportBody],
    keys: Keys,
    records: list[CertRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified, decoded = Calls(), Calls()
    monkeypatch.setattr(envelope, "verify", verified.counting(envelope.verify))
    monkeypatch.setattr(acceptance, "decode_payload", decoded.counting(decode_payload))
    real = jprs(keys, records, 1)
    as_receipt = envelope.sign(RECEIPT_PAYLOAD_TYPE, real.payload, [keys.jprs])
    message = (
        f"jprs's snapshot: payload type {RECEIPT_PAYLOAD_TYPE!r} is not {SNAPSHOT_PAYLOAD_TYPE!r}"
    )
    with refused(trust, PayloadTypeError, message):
        trust.update_peer(as_receipt, version=1, now=NOW)
    assert (verified.count, decoded.count) == (0, 0)
    with refused(trust, UntrustedSignerError, "no signature by a key pinned for party 'jprs'"):
        trust.update_peer(jprs(keys, records, 1, key=keys.stranger), version=1, now=NOW)
    tampered = replace(real, payload=real.payload + b"\x00")
    with refused(trust, BadSignatureError, "does not verify over the received payload"):
        trust.update_peer(tampered, version=1, now=NOW)
    assert decoded.count == 0
    assert verified.count == 2


def test_an_earlier_peer_snapshot_is_verified_but_not_held(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    trust.update_peer(jprs(keys, records, 3), version=3, now=NOW)
    held = trust.state
    earlier = trust.verify_earlier_peer(jprs(keys, records, 2, expires_at=NOW), version=2)
    assert earlier.snapshot.header.version == 2  # expired: no matter for an earlier one
    assert trust.state == held


def test_a_rotation_announced_in_a_refused_snapshot_is_not_taken(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    trust.update_peer(jprs(keys, records, 3), version=3, now=NOW)
    announcing = envelope.sign(
        SNAPSHOT_PAYLOAD_TYPE,
        payload(records, version=2, next_signing_key=keys.stranger.public.spki_der),
        [keys.jprs, keys.stranger],
    )
    with refused(trust, PeerRollbackError, "jprs's snapshot version 2"):
        trust.update_peer(announcing, version=2, now=NOW)
    assert not trust.rotations
    taken = trust.verify_earlier_peer(announcing, version=2)  # an earlier one may rotate a key
    assert taken.rotation is not None and trust.rotations == (taken.rotation,)


def test_a_report_that_the_peer_sent_nothing_after_one_was_verified_is_a_rollback(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    trust.check_peer_absent()  # nothing verified yet: the server may be right
    held = trust.update_peer(jprs(keys, records, 1), version=1, now=NOW).snapshot
    message = (
        f"a report says jprs has sent no snapshot of pairing {PAIRING!r}, but its version 1 "
        f"({held.payload_sha256[:16]}) was verified here: the exchange server rolled the peer back"
    )
    with refused(trust, PeerRollbackError, message) as info:
        trust.check_peer_absent()
    assert info.value.finding.code == "peer-rollback"  # type: ignore[attr-defined]


# --- the log checkpoint and the state as a whole ----------------------------------------------


def test_the_checkpoint_slot_holds_what_the_caller_verified_and_never_shrinks(
    trust: PairingTrust[ReportBody],
) -> None:
    big = LogCheckpoint(10, b"\x01" * 32, b"note of size 10\n")
    trust.replace_checkpoint(big)
    assert trust.state.checkpoint == big
    message = f"pairing {PAIRING!r}: checkpoint of tree size 9 after one of size 10 was verified"
    with refused(trust, CheckpointRollbackError, message):
        trust.replace_checkpoint(LogCheckpoint(9, b"\x02" * 32, b"note of size 9\n"))
    bigger = LogCheckpoint(12, b"\x03" * 32, b"note of size 12\n")
    trust.replace_checkpoint(bigger)
    assert trust.state.checkpoint == bigger


def test_a_state_given_back_is_the_one_checked_against(
    keys: Keys, records: list[CertRecord]
) -> None:
    # What the store saved is what a restarted agent checks the next input against.
    first = make_trust(keys)
    first.update_peer(jprs(keys, records, 2), version=2, now=NOW)
    restarted = make_trust(keys, first.state)
    with refused(restarted, PeerRollbackError, "after version 2"):
        restarted.update_peer(jprs(keys, records, 1), version=1, now=NOW)


def test_the_trusted_state_is_of_the_pairings_two_parties_only(keys: Keys) -> None:
    with pytest.raises(ValueError, match=f"^secom and stranger are not the parties of {PAIRING}$"):
        PairingTrust(
            party="secom",
            pairing=POLICY,
            server_keys={},
            peer=PartyPolicy("stranger", {}),
            reports=REPORTS,
        )


# --- the exchange operator's chain reset -------------------------------------------------------


def _reset(continues_from: int, *superseded: int, party: str = "jprs") -> ChainReset:
    return ChainReset(SERVER, party, PAIRING, continues_from, superseded, "INC-42", NOW)


def test_a_chain_reset_holds_the_peer_at_the_version_it_continues_from(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    for version in (1, 2, 3):
        trust.update_peer(jprs(keys, records, version), version=version, now=NOW)
    trust.apply_chain_reset(_reset(1, 2, 3))
    assert trust.state.peer == Verified(1, "")
    # jprs's own version 2, other bytes than the one set aside: no equivocation.
    own = trust.update_peer(jprs(keys, records[3:], 2), version=2, now=NOW).snapshot
    assert trust.state.peer == Verified(2, own.payload_sha256)


def test_after_a_reset_a_version_below_it_is_still_a_rollback(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    for version in (1, 2, 3):
        trust.update_peer(jprs(keys, records, version), version=version, now=NOW)
    trust.apply_chain_reset(_reset(2, 3))
    with refused(trust, PeerRollbackError, "version 1 of pairing 'secom-jprs' after version 2"):
        trust.update_peer(jprs(keys, records, 1), version=1, now=NOW)
    with refused(trust, PeerRollbackError, "a report says jprs has sent no snapshot"):
        trust.check_peer_absent()


def test_a_reset_that_does_not_set_aside_the_verified_version_is_refused(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    for version in (1, 2, 3):
        trust.update_peer(jprs(keys, records, version), version=version, now=NOW)
    held = trust.state
    message = (
        f"pairing {PAIRING!r}: a chain reset of jprs continues from version 1 but does not set "
        "aside version 3, verified here: a rollback of the peer under cover of a reset"
    )
    with refused(trust, LogInconsistentError, message):
        trust.apply_chain_reset(_reset(1, 2))
    assert trust.state == held


def test_a_reset_of_another_party_changes_nothing(
    trust: PairingTrust[ReportBody], keys: Keys, records: list[CertRecord]
) -> None:
    trust.update_peer(jprs(keys, records, 2), version=2, now=NOW)
    held = trust.state
    trust.apply_chain_reset(_reset(0, 1, 2, party="secom"))
    assert trust.state == held
