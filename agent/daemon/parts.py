"""What the agent cycle's modules share of the `Agent`: its configuration, store, keys and client.

The cycle's steps (`push`, `sync`, `cosign`, `writing`) take the agent through this protocol rather
than copies of its parts, so a client replaced on the agent (a test serving it a hostile exchange)
is the one every step uses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from invsync.agent.config.settings import AgentConfig
from invsync.agent.daemon.log_watch import LogWatch
from invsync.agent.daemon.report_check import ReportCheck
from invsync.agent.daemon.restore import Restore
from invsync.agent.daemon.rotation import OwnKeys, PeerKeys
from invsync.agent.exchange.client import ExchangeClient
from invsync.agent.exchange.keys import VerifyKey
from invsync.agent.exchange.snapshot import BuildMemo
from invsync.agent.model.record import CertRecord
from invsync.agent.report.body import Pins
from invsync.agent.store.agent_store import AgentStore
from invsync.agent.store.facts_cache import FactsCache


class AgentParts(Protocol):
    config: AgentConfig
    clock: Callable[[], datetime]
    store: AgentStore
    keys: OwnKeys
    server_keys: dict[str, VerifyKey]
    peer_keys: PeerKeys
    client: ExchangeClient
    log_watch: LogWatch
    restorer: Restore
    checker: ReportCheck
    facts: FactsCache  # what the process derived, kept for the next one
    # The inventory as this cycle's collection stored it (`AgentStore.as_stored`); None
    # outside a cycle or before its collection: the store is read instead.
    held: list[CertRecord] | None
    # What each pairing's last snapshot build leaves for the next (`build_snapshot`'s memo).
    encodings: dict[str, BuildMemo] | None  # None: nothing is kept (a one-shot process)

    def pins(self) -> Pins: ...
