"""Long polls for a pairing's report (issue 13): an agent waits on the server, not in a loop.

An agent waits twice a cycle: for the report on its new snapshot (made off the push, by the
report worker), then, once it signed that report, for the peer's signature or a newer report on
the same snapshot. Asking again every 200 ms cost a call and a report body each time; a waiting
call is answered as soon as a report is stored or signed (`ReportNews.changed`), or when its
time is up, with the latest report as it stands.

A report a newer push has already superseded is not an answer while its successor is being
made (`ReportWait.current`): when the peer pushed just after us, checking the report on the
peer's old snapshot would cost the agent a whole reconciliation for a report nobody needs, and
the one on both new snapshots follows in a moment. When the time is up it is answered as it
stands, so a report maker that fails costs a wait, never the cycle.

For the same reason a report is not an answer while the caller's peer is pushing a snapshot
of the same pairing (`ReportNews.push_under_way`): when both agents push at about the same
time, the report on the first push is made while the second one is being accepted, and the
first agent would check a report that the one on both new snapshots supersedes a moment later.
A push counts from the moment its signed header names its party and pairing (it is then
decoded and checked, which takes the longest) until it is committed or refused; then the
waiting calls look again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from invsync.agent.errors import ReportError
from invsync.agent.report.body import ReportBody, parse_report_body
from invsync.server.storage import StoredReport

# The longest one call waits, whatever it asks: a waiting call holds a server thread.
MAX_WAIT_SECONDS = 20.0
# Waiting calls one party may hold at once (an agent waits for one report per pairing at a
# time); more are answered at once, so that no party ties up the server's call slots.
MAX_WAITING_PER_PARTY = 2


@dataclass(frozen=True)
class ReportWait:
    """What a waiting caller waits for (GetReportRequest): a report naming its snapshot of
    payload SHA-256 `naming` (hex) and, if `past` is set, another than report `past`, or that
    one signed by every signer it lists."""

    party: str
    naming: str
    past: str
    seconds: float
    # Whether the caller still waits (gRPC's context.is_active): a cancelled call stops at once.
    alive: Callable[[], bool] = lambda: True
    # Whether a report body compares the parties' latest snapshots (the exchange asks its
    # report maker); False while a newer push's report is still to be made.
    current: Callable[[ReportBody], bool] = lambda body: True

    def met_by(self, stored: StoredReport) -> bool:
        try:
            body = parse_report_body(stored.envelope.payload)
        except ReportError:
            return False  # an older body format: the caller reads it as it stands
        side = body.root if body.root.party == self.party else body.subordinate
        if side.digest != self.naming:
            return False
        if not self.past or stored.report_id != self.past:
            return self.current(body)  # a report the caller has not seen: the newest one
        signed = {s.keyid for s in stored.envelope.signatures}
        return all(signer.keyid in signed for signer in body.signers)


class ReportNews:
    """Wakes the calls waiting for a report when one is stored or signed, or the server stops."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: dict[str, int] = {}
        self._pushing: Counter[tuple[str, str]] = Counter()  # (party, pairing) being pushed
        self._closed = False

    def changed(self) -> None:
        """A report was stored or signed (or a waiting call was cancelled). Called after its
        transaction committed, never while holding the store's lock (a waiter reads the store
        holding this one)."""
        with self._changed:
            self._changed.notify_all()

    @contextmanager
    def push_under_way(self) -> Iterator[Callable[[str, str], None]]:
        """Around one push, to its receipt or refusal. Call what it gives with the party and
        pairing of the push once its signed header verified; the waiting calls look again
        when a push so named ends."""
        named: list[tuple[str, str]] = []

        def name(party: str, pairing: str) -> None:
            if not named:
                with self._changed:
                    self._pushing[party, pairing] += 1
                named.append((party, pairing))

        try:
            yield name
        finally:
            if named:
                with self._changed:
                    self._pushing[named[0]] -= 1
                    if not self._pushing[named[0]]:
                        del self._pushing[named[0]]
                    self._changed.notify_all()

    def pushing(self, party: str, pairing: str) -> bool:
        """Whether a push by `party` of a snapshot of `pairing` is under way."""
        with self._changed:
            return (party, pairing) in self._pushing

    def close(self) -> None:
        """The server stops: every waiting call is answered now, and later ones at once."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait(
        self, latest: Callable[[], StoredReport | None], wait: ReportWait
    ) -> StoredReport | None:
        """The latest report once it meets `wait`, or as it stands when the time is up (at
        once for a party already holding MAX_WAITING_PER_PARTY waiting calls)."""
        deadline = time.monotonic() + min(wait.seconds, MAX_WAIT_SECONDS)
        with self._changed:
            if self._waiting.get(wait.party, 0) >= MAX_WAITING_PER_PARTY:
                return latest()
            self._waiting[wait.party] = self._waiting.get(wait.party, 0) + 1
            try:
                return self._until(latest, wait, deadline)
            finally:
                self._waiting[wait.party] -= 1

    def _until(
        self, latest: Callable[[], StoredReport | None], wait: ReportWait, deadline: float
    ) -> StoredReport | None:
        while True:
            stored = latest()
            left = deadline - time.monotonic()
            met = stored is not None and wait.met_by(stored)
            if met or left <= 0 or self._closed or not wait.alive():
                return stored
            self._changed.wait(left)
