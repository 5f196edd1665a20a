"""A split view against a real server process: JPRS's snapshot carries a log checkpoint, signed
with the server's key, of a log that SECOM's own view does not extend. SECOM refuses to co-sign,
keeps the `log-split-view` finding and shows it in `invsync status`; its own log check passes.
(Unit tests of both checks: tests/test_log_watch.py.)"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from invsync.agent.daemon.cycle import Agent
from invsync.agent.exchange.checkpoint import Checkpoint, sign_checkpoint
from invsync.agent.exchange.keys import load_signing_key
from invsync.agent.exchange.rejections import LogInconsistentError, LogSplitViewError
from invsync.agent.exchange.trusted import LogCheckpoint
from invsync.server.cli import invsync
from tests.integration.conftest import Federation, await_report, pairing_of

pytestmark = pytest.mark.integration

PAIRING = "secom-jprs"
SERVER = "demo-exchange"
OTHER_ROOT = b"\x07" * 32


def test_a_peer_shown_another_log_is_a_split_view_and_nothing_is_co_signed(
    federation: Federation, agents: dict[str, Agent]
) -> None:
    secom, jprs = agents["secom"], agents["jprs"]
    # The exchange showed JPRS a log of two entries with another root: its agent verified that
    # checkpoint (the server's key signed it), and its next snapshot carries it.
    server_key = load_signing_key(federation.work / "keys" / "server.key")
    shown = sign_checkpoint(Checkpoint(SERVER, 2, OTHER_ROOT), SERVER, server_key)
    jprs.checker.trust(pairing_of(jprs)).replace_checkpoint(LogCheckpoint(2, OTHER_ROOT, shown))
    # The server accepts the push; JPRS's own agent then sees its receipt's checkpoint is not of
    # the log it was shown, and refuses the receipt (the snapshot stays pending at JPRS).
    forked = (
        f"refused [log-inconsistent]: pairing {PAIRING!r}: the receipt for jprs's version 2 "
        "carries a checkpoint of size 7 not consistent with the one of size 2 verified here "
        "(consistency 2 -> 7: the proof does not lead to the new root)"
    )
    with pytest.raises(LogInconsistentError, match=f"^{re.escape(forked)}$"):
        jprs.push(pairing_of(jprs))
    await_report(secom.client, 1, 2)  # made off the push: the log then holds 9 entries

    message = (
        f"refused [log-split-view]: pairing {PAIRING!r}: jprs's snapshot version 2 carries a log "
        "checkpoint of size 2, ours is of size 9, and they are not of one log (consistency "
        "2 -> 9: the proof does not lead to the new root)"
    )
    with pytest.raises(LogSplitViewError, match=f"^{re.escape(message)}$"):
        secom.cosign(pairing_of(secom), wait_seconds=10)
    report = secom.client.report(PAIRING)
    assert not secom.store.has_cosigned(report.report_id)
    (refusal,) = secom.store.refusals(PAIRING)
    assert (refusal.rule, refusal.finding.code, refusal.finding.party) == (
        "log-split-view",
        "log-split-view",
        "",
    )
    held = secom.store.trusted_state(PAIRING).checkpoint
    assert held is not None and held.size == 9  # secom's own view of the log verified fine
    config = str(federation.work / "secom.toml")
    status = CliRunner().invoke(invsync, ["status", "--config", config, "--offline"]).output
    assert "  REFUSED: 1 answer(s) of the server, last at " in status, status
    assert f": log-split-view: pairing {PAIRING!r}: jprs's snapshot version 2 carries" in status
