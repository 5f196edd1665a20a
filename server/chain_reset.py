"""`invsync server reset-chain`: the exchange operator's way out of a misused party key.

A party whose signing key was misused may find its chain in a pairing ahead of it: snapshots it
never made, accepted because they were signed with its key, at versions its agent has not
reached. The operator names the last good version; in one transaction the server sets aside the
party's snapshots and key rotations above it (moved to `superseded_*` tables, never deleted),
appends a CHAIN_RESET entry holding its signed statement to the log and signs the new
checkpoint, and makes the pairing's report on the chain as it now stands. The party's next
snapshot then follows that version. The set-aside snapshots stay
in the log, where agents and auditors see them beside the reset.

The server must be stopped (its database lock is taken), so no push is accepted between reading
the chain and resetting it. Replace or rotate the misused key in the configuration first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from invsync.agent.errors import ConfigError
from invsync.agent.exchange.chain_reset import ChainReset, sign_chain_reset
from invsync.agent.exchange.keys import SigningKey, load_signing_key, load_verify_key
from invsync.agent.exchange.log_entry import log_entry
from invsync.agent.store.lock import DaemonLock
from invsync.server.config import ServerConfig
from invsync.server.live_config import policy_of
from invsync.server.reconciling import ReportMaker
from invsync.server.server_keys import check_key_in_force
from invsync.server.storage import Logged, LogWriter
from invsync.server.store import ServerStore
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.server")


class ResetRefused(ConfigError):
    """The reset names a party, pairing or version the server cannot reset to."""

    hint = "Name a party of the pairing, and a version of it the server holds (or 0)."


@dataclass(frozen=True)
class ResetDone:
    reset: ChainReset
    logged: Logged
    report_id: str | None  # the pairing's report made on the reset chain
    # Key ids that signed a snapshot set aside and are still the party's configured keys: the
    # misused key, not replaced yet.
    still_configured: list[str]


def reset_chain(
    config: ServerConfig,
    *,
    party: str,
    pairing: str,
    continues_from: int,
    reason: str,
    now: datetime | None = None,
) -> ResetDone:
    """Reset `party`'s chain in `pairing` to continue from `continues_from`, logged."""
    _check_member(config, party, pairing)
    if not reason.strip():
        raise ResetRefused("a reason is required (--reason): it is logged with the reset")
    key = load_signing_key(config.signing_key)
    writer = LogWriter(config.name, key)
    with DaemonLock(config.database):
        store = ServerStore(config.database)
        try:
            with store.transaction():
                # Never a reset signed by a key the log retired (`invsync server keys rotate`).
                check_key_in_force(store, config.name, key, f"{config.file}: server.signing_key")
                _check_version(store, party, pairing, continues_from)
                signers = _signers_above(store, party, pairing, continues_from)
                index = store.log_size()
                superseded = store.supersede(party, pairing, continues_from, index)
                reset = ChainReset(
                    config.name,
                    party,
                    pairing,
                    continues_from,
                    tuple(superseded),
                    reason,
                    now or datetime.now(UTC),
                )
                env = sign_chain_reset(reset, key)
                entry = log_entry(
                    pb.LOG_ENTRY_KIND_CHAIN_RESET,
                    env,
                    party=party,
                    pairing=pairing,
                    version=continues_from,
                )
                logged = writer.append(store, entry)
                # The pairing's latest report names the snapshots set aside; a new one on the
                # chain as it now stands keeps the party's agent from taking that report's word
                # that it is behind (agent.daemon.restore).
                report = _reporter(config, store, key).make(pairing)
        finally:
            store.close()
    log.warning("%s (log entry %d)", reset.describe(), logged.index)
    pinned = {load_verify_key(path).keyid for path in config.parties[party].signing_keys}
    return ResetDone(reset, logged, report, sorted(signers & pinned))


def _reporter(config: ServerConfig, store: ServerStore, key: SigningKey) -> ReportMaker:
    return ReportMaker(
        server_name=config.name,
        store=store,
        policy=policy_of(config),
        signing_key=key,
        as_of=config.report_as_of,
    )


def _signers_above(store: ServerStore, party: str, pairing: str, version: int) -> set[str]:
    last = store.last_accepted(party, pairing)
    held = range(version + 1, (last.version if last else 0) + 1)
    envelopes = (store.snapshot(party, pairing, v) for v in held)
    return {s.keyid for env in envelopes if env is not None for s in env.signatures}


def _check_member(config: ServerConfig, party: str, pairing: str) -> None:
    found = config.pairings.get(pairing)
    if found is None:
        known = ", ".join(sorted(config.pairings)) or "none"
        raise ResetRefused(f"{config.file}: no pairing {pairing!r} (pairings: {known})")
    if party not in (found.root, found.subordinate):
        raise ResetRefused(
            f"{config.file}: {party!r} is not a party of pairing {pairing!r} "
            f"({found.root} and {found.subordinate} are)"
        )


def _check_version(store: ServerStore, party: str, pairing: str, continues_from: int) -> None:
    last = store.last_accepted(party, pairing)
    held = last.version if last is not None else 0
    if continues_from and store.snapshot(party, pairing, continues_from) is None:
        raise ResetRefused(
            f"the server holds no version {continues_from} of {party} in pairing {pairing} "
            f"(its latest is {held or 'none'}); name a version it holds, or 0"
        )
    if held <= continues_from:
        raise ResetRefused(
            f"{party}'s chain in pairing {pairing} ends at "
            f"{f'version {held}' if held else 'no snapshot'}: nothing above version "
            f"{continues_from} to set aside"
        )
