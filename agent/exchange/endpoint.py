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
