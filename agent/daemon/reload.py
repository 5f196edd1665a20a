"""The agent daemon's configuration read again while it runs (issue 14: pairings change without
downtime), on SIGHUP and when the file's bytes change (agent.daemon.config_watch).

The new file is checked whole first, as `agent run` checks it at start: it loads, every key
file it names is a key the daemon can use, and `agent.party` and `agent.database` are the
running ones (another party or database is another agent: that takes a restart, under the
lock of its own database). A file that fails is refused with a log line naming it and what is
wrong, and the running configuration stays. One that passes replaces the whole agent between
two cycles: its next cycle collects its sources, and pushes and reports its pairings, as the
new file says; a pairing removed is simply no longer pushed, and its reports stay.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from invsync.agent.config.keyfiles import check_agent_keys
from invsync.agent.config.settings import AgentConfig, load_agent_config
from invsync.agent.errors import ConfigError

# A change of these is another agent, not a reload.
RESTART_KEYS = ("party", "database")


@dataclass(frozen=True)
class Loaded:
    """A configuration and the bytes of the files an agent reads once, when it is made (its
    keys, the pinned keys, its TLS files): a SIGHUP after a TLS renewal or a key replaced in
    place is a change, and a SIGHUP with nothing changed keeps the running agent and what it
    holds between cycles."""

    config: AgentConfig
    files: bytes

    @classmethod
    def of(cls, config: AgentConfig) -> Loaded:
        digest = hashlib.sha256()
        for path in _read_once(config):
            try:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                digest.update(b"unreadable " + str(path).encode())
        return cls(config, digest.digest())


def _read_once(config: AgentConfig) -> list[Path]:
    server = config.server
    paths = [config.signing_key, server.ca, server.cert, server.key, *server.signing_keys]
    if config.next_signing_key is not None:
        paths.append(config.next_signing_key)
    for keys in config.peers.values():
        paths += keys
    return paths


def reloaded_config(running: AgentConfig) -> AgentConfig:
    """`running`'s file loaded and checked again; ConfigError naming the file and key when it
    cannot replace `running`."""
    new = load_agent_config(running.file)
    for key in RESTART_KEYS:
        was, now = getattr(running, key), getattr(new, key)
        if was != now:
            raise ConfigError(
                f"{running.file}: agent.{key} changed from {was} to {now}: that is another "
                "agent; stop this one and start it"
            )
    check_agent_keys(new)
    return new


def changes(running: AgentConfig, new: AgentConfig) -> str:
    """What a reload changes, for its line: "pairings +secom-nii; peers +nii; sources"."""
    parts = [
        added_removed("pairings", running.pairings.keys(), new.pairings.keys()),
        added_removed("peers", running.peers.keys(), new.peers.keys()),
    ]
    edited = sorted(
        name
        for name in running.pairings.keys() & new.pairings.keys()
        if running.pairings[name] != new.pairings[name]
    )
    if edited:
        parts.append("changed " + ", ".join(edited))
    parts += [
        key for key in ("sources", "server", "notify") if getattr(running, key) != getattr(new, key)
    ]
    if _own_rules(running) != _own_rules(new):
        parts.append("attribution")
    shown = "; ".join(part for part in parts if part)
    return shown or "no change to pairings, peers, sources, server or attribution"


def added_removed(kind: str, old: Iterable[str], new: Iterable[str]) -> str:
    """What a reload adds and removes of `kind` (names), for its line: "pairings +a -b"."""
    olds, news = set(old), set(new)
    items = [f"+{n}" for n in sorted(news - olds)] + [f"-{n}" for n in sorted(olds - news)]
    return f"{kind} {' '.join(items)}" if items else ""


def _own_rules(config: AgentConfig) -> object:
    """The attribution as configured, without the rules each root pairing adds (those change
    with the pairings, and are said there)."""
    rules = tuple(r for r in config.attribution.rules if not r.label.startswith("pairings."))
    return rules, config.attribution.ccadb_owners
