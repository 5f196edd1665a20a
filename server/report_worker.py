"""Reports made off the push (issue 13): `PushSnapshot` stores, logs and answers with the receipt;
this worker thread reconciles the pairing afterwards.

Made inside the push, under the exchange's one-writer lock, a report held every other push of
the federation for as long as reconciliation took: at 10,000 certificates a push waited past the
agent's 10-second deadline and was sent again in full. Requests for one pairing coalesce (a
pairing asked for twice while waiting is reconciled once, on the latest snapshots; asked again
while its report is made, it gets no second report when the first is already on the latest
snapshots: `ReportMaker.make_if_stale`). The agents
poll for the report their cycle waits on, so they need nothing else. On stop the worker makes
the reports still asked for, then ends; at start the daemon asks for every pairing whose latest
report is not on its latest snapshots (`ReportMaker.stale`), so a report a stop cut short is
made then and an unchanged pairing gets no new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

log = logging.getLogger("invsync.server")


class ReportWorker:
    def __init__(self, make: Callable[[str], object]) -> None:
        self._make = make
        self._pending: list[str] = []  # pairings asked for, in order, each once
        self._busy = False
        self._stopping = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="invsync-reports", daemon=True)

    def start(self, pairings: Iterable[str] = ()) -> None:
        for pairing in pairings:
            self.request(pairing)
        self._thread.start()

    def request(self, pairing: str) -> None:
        """Reconcile `pairing` soon; returns at once."""
        with self._changed:
            if self._stopping and not self._thread.is_alive():
                # A push committed after the last report was made on stop: the next start makes
                # it (the daemon asks for every pairing whose report is behind its snapshots).
                log.warning("report of pairing=%s left to the next start: stopping", pairing)
                return
            if pairing not in self._pending:
                self._pending.append(pairing)
            self._changed.notify_all()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing is asked for or being made; False if `timeout` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._busy, timeout)

    def stop(self) -> None:
        """Make what is still asked for, then end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while (pairing := self._next()) is not None:
            try:
                self._make(pairing)
            except Exception:  # the snapshot is committed already; the next request retries
                log.exception("reconciling pairing=%s failed", pairing)
            with self._changed:
                self._busy = False
                self._changed.notify_all()

    def _next(self) -> str | None:
        with self._changed:
            self._changed.wait_for(lambda: self._pending or self._stopping)
            if not self._pending:
                return None
            self._busy = True
            return self._pending.pop(0)
