"""An agent restored from a backup: its database is older than what the exchange accepted from it.

Such an agent would build the version after the last one its database knows, which the server
already holds. It notices before it builds when the server's latest report (signed by the
pinned server key) names a later version of ours (`reported_version`), and otherwise when the
push is refused as a rollback or an equivocation (`is_behind`). Either way it learns its own
last accepted snapshot from the exchange's log, not from the server's word (`Restore.restore`),
and adopts only a version at least as new as the trigger named (`floor`: the report's version;
the refused version, or the one after it for a rollback): a log that hides our newest entry
(an older checkpoint, an entry withheld as another pairing's) is a finding, never a reason to
sign a second snapshot of a version the exchange holds:

1. the log's latest checkpoint, opened with the pinned server key and consistent with the last
   one this database verified (`agent.daemon.log_watch`);
2. the entries from the end of that tree back to the one our latest receipt names: our latest
   SNAPSHOT entry of the pairing that no later chain reset of ours set aside (the reset signed
   by a pinned server key), its exact bytes proven included in the checkpoint, its
   envelope in the log's canonical form and signed by one of our own keys, its payload of our
   party, pairing and version, later than any this database sent;
3. the RECEIPT entry right after it, taken through the pairing's trusted state like any receipt.

That snapshot becomes the latest sent, in one transaction with its receipt, the checkpoint and
the removal of a pending snapshot it supersedes; the cycle then pushes the next version on it
(version + 1, previous_digest its SHA-256). So the agent never pushes a version the log holds
once it knows of it, and is never stuck: each refusal as behind sends it to the log, and a log
that shows no later snapshot of ours is a `log-inconsistent` finding that says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from google.protobuf.message import DecodeError

from invsync.agent.daemon.log_reading import (
    Fail,
    LogClient,
    check_included,
    inconsistent,
    latest_receipt,
    read_entry,
    shown_entries,
    take_receipt,
)
from invsync.agent.daemon.log_watch import LogHead, LogWatch
from invsync.agent.daemon.refusals import recording_refusals
from invsync.agent.daemon.rotation import OwnKeys
from invsync.agent.errors import InvsyncError, TransportError
from invsync.agent.exchange.chain_reset import ChainReset, open_chain_reset
from invsync.agent.exchange.client import ExchangeClient, NotFoundYet
from invsync.agent.exchange.envelope import Envelope, verify_or_raise
from invsync.agent.exchange.log_entry import logged_envelope, parse_log_entry
from invsync.agent.exchange.rejections import EquivocationError, RollbackError, UntrustedInput
from invsync.agent.exchange.snapshot import (
    SNAPSHOT_PAYLOAD_TYPE,
    Base,
    decode_header,
    decode_payload,
)
from invsync.agent.exchange.trusted import PairingTrust
from invsync.agent.model.snapshot import ROOT, SnapshotHeader
from invsync.agent.report.body import ReportBody
from invsync.agent.store.agent_store import AgentStore, SentSnapshot
from invsync.v1 import invsync_pb2 as pb

log = logging.getLogger("invsync.agent")
# The refusals that say the server holds a later (or another) snapshot of ours than we built on.
BEHIND_RULES = frozenset({RollbackError.rule, EquivocationError.rule})
# Entries read per request while looking back for ours: the server's cap.
PAGE = 256


def is_behind(error: TransportError) -> bool:
    """The server refused our push because it already holds that version of ours, or later."""
    return error.rule in BEHIND_RULES


def refused_floor(error: TransportError, refused: int) -> int:
    """The least version of ours the server must hold after refusing our `refused` as behind:
    that version (an equivocation: it holds another one of it), or the next (a rollback)."""
    return refused + 1 if error.rule == RollbackError.rule else refused


def reported_version(client: ExchangeClient, trust: PairingTrust[ReportBody], role: str) -> int:
    """Our snapshot version that the server's latest report names (0: no report, or none of
    ours in it), the report verified with the pinned server key first. A report the trusted
    state refuses tells nothing here (0, and a warning): pushing trusts no report, and the
    co-signing step refuses it in its turn, with its reason."""
    try:
        served = client.report(trust.pairing.name)
    except NotFoundYet:
        return 0
    env = Envelope.from_pb(served.envelope)
    try:
        body = trust.verify_report(env, report_id=served.report_id)
    except UntrustedInput as e:
        log.warning(
            "pairing=%s the latest report tells nothing of our version: %s", trust.pairing.name, e
        )
        return 0
    return (body.root if role == ROOT else body.subordinate).version


class Restore:
    """Continues a pairing's chain after our latest snapshot in the log (module docstring)."""

    def __init__(
        self,
        *,
        party: str,
        keys: OwnKeys,
        store: AgentStore,
        watch: LogWatch,
        clock: Callable[[], datetime],
    ) -> None:
        self.party = party
        own = [key.public for key in (keys.current, keys.next) if key is not None]
        self.own_keys = {key.keyid: key for key in own}
        self.store = store
        self.watch = watch
        self.clock = clock

    def restore(
        self, client: LogClient, trust: PairingTrust[Any], why: str, floor: int = 0
    ) -> SentSnapshot:
        """Adopt our latest snapshot in the log as the latest sent; `why` says what showed that
        this database is behind, `floor` the least version it named. LogInconsistentError
        (recorded) if the log shows none later than this database's, or none of `floor`."""
        pairing = trust.pairing.name
        with recording_refusals(self.store, self.party, pairing, self.clock):
            head = self.watch.head(client, trust)
            index, sent = self._latest_own(client, trust, head, why, floor)
            sent = self._with_whole(client, trust, index, sent)
            receipt = self._receipt_after(client, index, sent, inconsistent(pairing))
            with trust.staged() as staged:  # adopted in memory once the database took it
                take_receipt(client, staged, receipt, version=sent.version, payload=sent.payload)
                staged.replace_checkpoint(head.held())
                self.store.adopt_logged_snapshot(sent, staged.state, self.clock())
        log.warning(
            "party=%s pairing=%s this database is behind the exchange (%s): continuing after "
            "version=%d, log entry %d",
            self.party,
            pairing,
            why,
            sent.version,
            index,
            extra={"party": self.party, "pairing": pairing, "version": sent.version},
        )
        return sent

    def _latest_own(
        self, client: LogClient, trust: PairingTrust[Any], head: LogHead, why: str, floor: int
    ) -> tuple[int, SentSnapshot]:
        """Our latest SNAPSHOT entry of the pairing, after the one our latest receipt names,
        verified (step 2) and at least version `floor`; read back from the end of the tree, a
        page at a time."""
        pairing = trust.pairing.name
        fail = inconsistent(pairing)
        known = latest_receipt(trust.state)
        first = known.log_index + 1 if known is not None else 0
        end, withheld, aside = head.checkpoint.size, 0, set[int]()
        while end > first:
            start = max(first, end - PAGE)
            found, hidden = self._last_of_ours(client, trust, start, end, fail, aside)
            withheld += hidden
            if found is not None:
                sent = self._verified(client, pairing, found, head, fail)
                return found, _at_least(sent, floor, why, withheld, fail)
            end = start
        last = self.store.latest_sent_snapshot(pairing)
        raise fail(
            f"{why}, but the log's {head.checkpoint.size} entries hold no snapshot of "
            f"{self.party} later than version {last.version if last else 0}"
            + _withheld_note(withheld)
        )

    def _last_of_ours(
        self,
        client: LogClient,
        trust: PairingTrust[Any],
        start: int,
        end: int,
        fail: Fail,
        aside: set[int],
    ) -> tuple[int | None, int]:
        """The index of our last SNAPSHOT entry of the pairing in start <= index < end that no
        later chain reset set aside, and how many entries after it the server withheld (as
        other pairings', by its word). Read from the end back: the versions set aside by the
        resets met on the way are added to `aside`, for the pages before this one."""
        pairing, withheld = trust.pairing.name, 0
        for index, leaf in reversed(shown_entries(client, start, end, fail)):
            if not leaf:
                withheld += 1
                continue
            try:
                entry = pb.LogEntry.FromString(leaf)
            except DecodeError:
                continue  # not one of ours to adopt (the log watch judges what the log holds)
            if (entry.party, entry.pairing) != (self.party, pairing):
                continue
            if entry.kind == pb.LOG_ENTRY_KIND_CHAIN_RESET:
                aside.update(self._reset(entry, index, fail, trust).superseded)
            elif entry.kind == pb.LOG_ENTRY_KIND_SNAPSHOT and entry.version not in aside:
                return index, withheld
        return None, withheld

    def _reset(
        self, entry: pb.LogEntry, index: int, fail: Fail, trust: PairingTrust[Any]
    ) -> ChainReset:
        """A chain reset of ours, once the server key in force there signed it: the snapshots
        it set aside were pushed with our key, but are not ours to continue from."""
        where = f"log entry {index}"
        try:
            return open_chain_reset(entry, where, trust.server_ring.keys_at(index + 1))
        except InvsyncError as e:
            raise fail(str(e)) from e

    def _verified(
        self, client: LogClient, pairing: str, index: int, head: LogHead, fail: Fail
    ) -> SentSnapshot:
        """Entry `index` as our sent snapshot, once included, canonical and signed by us."""
        where = f"log entry {index} ({self.party}'s latest snapshot in the log)"
        leaf = read_entry(client, index, where, fail)
        check_included(client, leaf, index, head.checkpoint, where, fail)
        entry, env = _logged(leaf, where, fail)
        if env.payload_type != SNAPSHOT_PAYLOAD_TYPE:
            raise fail(f"{where}: payload type {env.payload_type!r} is not a snapshot's")
        try:  # our signature first: only then is the payload read
            verify_or_raise(env, self.own_keys, who=f"{where}, signed as {self.party}")
            header = decode_header(env.payload)
        except InvsyncError as e:
            raise fail(str(e)) from e
        if (header.party, header.pairing, header.version) != (self.party, pairing, entry.version):
            raise fail(
                f"{where}: its payload is {header.party}'s version {header.version} of "
                f"{header.pairing!r}, the entry says version {entry.version}"
            )
        return self._newer(pairing, where, fail, _sent(env, header))

    def _newer(self, pairing: str, where: str, fail: Fail, sent: SentSnapshot) -> SentSnapshot:
        last = self.store.latest_sent_snapshot(pairing)
        if last is not None and sent.version <= last.version:
            raise fail(
                f"{where} is version {sent.version}, not later than version {last.version} "
                "this database sent"
            )
        return sent

    def _with_whole(
        self, client: LogClient, trust: PairingTrust[Any], index: int, sent: SentSnapshot
    ) -> SentSnapshot:
        """A restored delta with its whole set (agent.exchange.delta), rebuilt on the last
        snapshot this database sent from our snapshots logged after it, each signed by us and
        checked against its signed header; without, if the log does not chain them (the next
        push is then full)."""
        pairing = trust.pairing.name
        last = self.store.latest_sent_snapshot(pairing)
        whole = last.whole if last else None
        if sent.whole is not None or last is None or whole is None:
            return sent
        known = latest_receipt(trust.state)
        first = known.log_index + 1 if known is not None else 0
        base = Base(last.payload_sha256, whole)
        for at, leaf in shown_entries(client, first, index + 1, inconsistent(pairing)):
            env = self._own_snapshot_entry(leaf, pairing, at)
            if env is None:
                continue
            try:
                verify_or_raise(env, self.own_keys, who=f"log entry {at}, signed as {self.party}")
                rebuilt = decode_payload(env.payload, base=base)
            except InvsyncError:
                continue  # not on our chain from that base (a version a reset set aside)
            base = Base(rebuilt.payload_sha256, rebuilt.full)
        if base.payload_sha256 != sent.payload_sha256:
            return sent
        return replace(sent, full=base.full)

    def _own_snapshot_entry(self, leaf: bytes, pairing: str, index: int) -> Envelope | None:
        if not leaf:
            return None
        try:
            entry = pb.LogEntry.FromString(leaf)
            if (entry.kind, entry.party, entry.pairing) != (
                pb.LOG_ENTRY_KIND_SNAPSHOT,
                self.party,
                pairing,
            ):
                return None
            return logged_envelope(entry, f"log entry {index}")
        except (DecodeError, InvsyncError):
            return None

    def _receipt_after(
        self, client: LogClient, index: int, sent: SentSnapshot, fail: Fail
    ) -> Envelope:
        """Step 3: the RECEIPT entry the server appends right after the snapshot's."""
        where = f"log entry {index + 1} (the receipt for {self.party}'s version {sent.version})"
        entry, env = _logged(read_entry(client, index + 1, where, fail), where, fail)
        if entry.kind != pb.LOG_ENTRY_KIND_RECEIPT:
            raise fail(f"{where} is no receipt")
        return env


def _logged(leaf: bytes, where: str, fail: Fail) -> tuple[pb.LogEntry, Envelope]:
    """An entry of ours and the envelope it holds, in the log's canonical form."""
    try:
        entry = parse_log_entry(leaf, where)
        return entry, logged_envelope(entry, where)
    except InvsyncError as e:
        raise fail(str(e)) from e


def _at_least(sent: SentSnapshot, floor: int, why: str, withheld: int, fail: Fail) -> SentSnapshot:
    """`sent` unless the trigger named a later version: the log then hides our newest snapshot,
    and adopting an older one would make us sign a second snapshot of a version it holds."""
    if sent.version >= floor:
        return sent
    raise fail(
        f"{why}, but our latest snapshot the log shows is version {sent.version}, not "
        f"version {floor} or later" + _withheld_note(withheld)
    )


def _withheld_note(withheld: int) -> str:
    if not withheld:
        return ""
    return f" ({withheld} later entries withheld as another pairing's)"


def _sent(env: Envelope, header: SnapshotHeader) -> SentSnapshot:
    """Our snapshot as this database keeps one it sent and the server receipted."""
    return SentSnapshot(
        pairing=header.pairing,
        version=header.version,
        payload=env.payload,
        payload_sha256=hashlib.sha256(env.payload).hexdigest(),
        payload_type=env.payload_type,
        signatures=tuple((s.keyid, s.sig) for s in env.signatures),
        issued_at=header.issued_at,
        expires_at=header.expires_at,
    )
