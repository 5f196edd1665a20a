"""Hostile pushes in process: nothing unverified is decoded, and sender text is quoted bounded."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from invsync.agent.errors import bounded
from invsync.agent.exchange import acceptance, record_codec, snapshot
from invsync.agent.exchange import rejections as rej
from invsync.agent.exchange.envelope import Envelope, Sig
from invsync.agent.exchange.snapshot import sign_snapshot
from invsync.agent.model import record
from invsync.agent.model.record import CertRecord
from invsync.server import metrics
from tests.exchange_rig import PAIRING, Keys, make_rig, payload


def _rejected(party: str, pairing: str, rule: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "invsync_snapshots_received_total",
        {"party": party, "pairing": pairing, "result": "rejected", "reason": rule},
    )
    return value or 0.0


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of a payload, header, record or certificate parser, by name."""
    calls: list[str] = []

    def counting(module: object, name: str) -> None:
        real: Callable[..., Any] = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("decode_payload", "_header_from_pb", "_record_from_pb", "record_from_pb"):
        counting(snapshot, name)
    counting(acceptance, "decode_payload")  # imported by name
    counting(record, "parse_certificate")
    counting(record_codec, "_parse")  # record_codec's name for parse_certificate
    # Nothing decoded before is shared (records alive from another test would not be parsed).
    monkeypatch.setattr(snapshot, "_ALIVE", weakref.WeakValueDictionary())
    return calls


def _bad_signature(env: Envelope) -> Envelope:
    sig = env.signatures[0]
    return Envelope(env.payload_type, env.payload, (Sig(sig.keyid, bytes(len(sig.sig))),))


def test_a_refused_push_decodes_nothing(
    tmp_path: Path, keys: Keys, records: list[CertRecord], parses: list[str]
) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    try:
        good = sign_snapshot(payload(records), keys.jprs)
        strangers = sign_snapshot(good.payload, keys.stranger)
        parses.clear()  # building a payload reads its header into the snapshot it decodes to
        before = _rejected("jprs", metrics.UNKNOWN, "bad-signature")
        with pytest.raises(rej.BadSignatureError):
            rig.push(_bad_signature(good), "jprs")
        assert _rejected("jprs", metrics.UNKNOWN, "bad-signature") == before + 1
        before = _rejected("jprs", metrics.UNKNOWN, "untrusted-signer")
        with pytest.raises(rej.UntrustedSignerError):
            rig.push(strangers, "jprs")
        assert _rejected("jprs", metrics.UNKNOWN, "untrusted-signer") == before + 1
        assert parses == []
        assert rig.snapshots() == 0
        rig.push(good, "jprs")  # the counters count: the same payload, well signed, is parsed
        assert "parse_certificate" in parses or "_parse" in parses
    finally:
        rig.store.close()


def test_a_verified_header_labels_a_later_rejection_with_its_pairing(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    try:
        rig.push(sign_snapshot(payload(records, version=2), keys.jprs), "jprs")
        before = _rejected("jprs", PAIRING, "rollback")
        with pytest.raises(rej.RollbackError):
            rig.push(sign_snapshot(payload(records), keys.jprs), "jprs")
        assert _rejected("jprs", PAIRING, "rollback") == before + 1
    finally:
        rig.store.close()


def test_a_huge_header_party_is_quoted_bounded(
    tmp_path: Path, keys: Keys, records: list[CertRecord]
) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    try:
        env = sign_snapshot(payload(records, party="x" * 100_000, role="subordinate"), keys.jprs)
        with pytest.raises(rej.PartyMismatchError) as caught:
            rig.push(env, "jprs")
        message = str(caught.value)
        assert len(message) <= rej.MESSAGE_CHARS + 100  # the rule's prefix besides
        assert message.startswith("snapshot rejected [party-mismatch]: header names party 'xxx")
        assert _rejected("jprs", metrics.UNKNOWN, "party-mismatch") >= 1
    finally:
        rig.store.close()


def test_a_huge_pairing_in_a_request_is_quoted_bounded(tmp_path: Path, keys: Keys) -> None:
    rig = make_rig(tmp_path / "server.db", keys)
    try:
        with pytest.raises(rej.AccessDenied) as caught:
            rig.exchange.fetch_peer_snapshot("jprs", "p\n" * 50_000, 1)
        assert len(str(caught.value)) < 300
        assert "p\\np\\n" in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        rig.store.close()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("secom-jprs", "secom-jprs"),
        ("a" * 200, "a" * 200),
        ("a" * 201, "a" * 200 + "…"),
        ("line\nforged=1\x00\x1b[31m\u202e", "line\\nforged=1\\x00\\x1b[31m\\u202e"),
        ("dé", "dé"),
        ("\n" * 150, "\\n" * 100 + "…"),
    ],
)
def test_bounded_shows_at_most_200_characters_and_no_control_ones(text: str, shown: str) -> None:
    assert bounded(text) == shown
