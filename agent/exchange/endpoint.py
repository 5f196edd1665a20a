"""Where an agent reaches the exchange server, and with which TLS files and pinned server keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerEndpoint:
    address: str
    ca: Path
    cert: Path
    key: Path
    signing_keys: tuple[Path, ...]
    # The exchange's configured name: its log's origin and checkpoint key name. "": the first
    # verified receipt's server name is adopted once and kept (agent.exchange.trusted).
    name: str = ""
