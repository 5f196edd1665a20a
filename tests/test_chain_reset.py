"""The operator's chain reset (issue 12): the signed statement, and the server's refusals.
The whole story with real processes is tests/integration/test_chain_reset.py."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invsync.agent.exchange.chain_reset import (
    CHAIN_RESET_PAYLOAD_TYPE,
    ChainReset,
    MalformedChainReset,
    decode_chain_reset,
    sign_chain_reset,
)
from invsync.agent.exchange.envelope import Envelope, sign
from invsync.agent.exchange.keys import generate
from invsync.server.chain_reset import ResetRefused, reset_chain
from invsync.server.config import load_server_config
from invsync.v1 import invsync_pb2 as pb

AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
RESET = ChainReset("exchange", "jprs", "secom-jprs", 1, (2, 3), "INC-42", AT)
KEY = generate()


def test_a_signed_reset_decodes_to_what_was_signed() -> None:
    assert decode_chain_reset(sign_chain_reset(RESET, KEY), "entry 9") == RESET


def test_another_payload_type_is_refused() -> None:
    env = sign("application/vnd.invsync.receipt.v1+protobuf", b"", [KEY])
    with pytest.raises(MalformedChainReset) as refused:
        decode_chain_reset(env, "entry 9")
    assert str(refused.value) == (
        "entry 9: payload type 'application/vnd.invsync.receipt.v1+protobuf' is not "
        f"'{CHAIN_RESET_PAYLOAD_TYPE}'"
    )


def test_bytes_that_are_no_statement_are_refused_naming_the_entry() -> None:
    with pytest.raises(MalformedChainReset, match=r"^entry 9: not a ChainResetBody \("):
        decode_chain_reset(Envelope(CHAIN_RESET_PAYLOAD_TYPE, b"\xff\xff", ()), "entry 9")


@pytest.mark.parametrize("superseded", [[3, 2], [1, 2], [2, 2]])
def test_versions_set_aside_must_ascend_above_the_version_continued_from(
    superseded: list[int],
) -> None:
    body = pb.ChainResetBody(party="jprs", pairing="p", continues_from=1, superseded=superseded)
    body.reset_at.FromDatetime(AT)
    env = Envelope(CHAIN_RESET_PAYLOAD_TYPE, body.SerializeToString(), ())
    with pytest.raises(MalformedChainReset) as refused:
        decode_chain_reset(env, "entry 9")
    assert str(refused.value) == "entry 9: the versions set aside must ascend, each above 1"


def test_the_description_bounds_the_operators_reason() -> None:
    long = ChainReset("exchange", "jprs", "p", 0, (1,), "x" * 5000 + "\nforged line", AT)
    text = long.describe()
    assert text.startswith("the exchange operator reset jprs's chain in pairing p to continue ")
    assert "from no snapshot (versions set aside: 1; reason: xxx" in text
    assert len(text) < 400 and "\n" not in text


@pytest.mark.parametrize(
    ("party", "pairing", "version", "reason", "message"),
    [
        ("jprs", "nii-jprs", 1, "r", "{file}: no pairing 'nii-jprs' (pairings: secom-jprs)"),
        (
            "nii",
            "secom-jprs",
            1,
            "r",
            "{file}: 'nii' is not a party of pairing 'secom-jprs' (secom and jprs are)",
        ),
        (
            "jprs",
            "secom-jprs",
            1,
            "  ",
            "a reason is required (--reason): it is logged with the reset",
        ),
        (
            "jprs",
            "secom-jprs",
            3,
            "r",
            "the server holds no version 3 of jprs in pairing secom-jprs (its latest is none); "
            "name a version it holds, or 0",
        ),
        (
            "jprs",
            "secom-jprs",
            0,
            "r",
            "jprs's chain in pairing secom-jprs ends at no snapshot: nothing above version 0 to "
            "set aside",
        ),
    ],
)
def test_a_reset_the_server_cannot_make_is_refused_and_logs_nothing(
    fed: Path, party: str, pairing: str, version: int, reason: str, message: str
) -> None:
    config = load_server_config(fed / "server.toml")
    with pytest.raises(ResetRefused) as refused:
        reset_chain(config, party=party, pairing=pairing, continues_from=version, reason=reason)
    assert str(refused.value) == message.format(file=config.file)
    if config.database.exists():
        with sqlite3.connect(config.database) as db:
            assert db.execute("SELECT count(*) FROM log_entries").fetchone() == (0,)
