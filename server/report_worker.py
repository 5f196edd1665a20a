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

A report that fails is asked for again after a wait that doubles with each failure in a row
(RETRY_FIRST_SECONDS up to RETRY_MAX_SECONDS), so a failure that passes (a busy database) does
not leave the pairing without its report until the next push: agents waiting for it are held
while it is due (server.report_news), up to their poll's time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("invsync.server")

RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


class ReportWorker:
    def __init__(
        self, make: Callable[[str], object], retry_first_seconds: float = RETRY_FIRST_SECONDS
    ) -> None:
        self._make = make
        self._retry_first = retry_first_seconds
        self._pending: list[str] = []  # pairings asked for, in order, each once
        self._retries: dict[str, tuple[float, float]] = {}  # pairing: (due, wait after it)
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
            self._retries.pop(pairing, None)  # new snapshots: a failure starts its wait anew
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
            except Exception:  # the snapshot is committed already: asked for again later
                log.exception("reconciling pairing=%s failed", pairing)
                failed = True
            else:
                failed = False
            with self._changed:
                if failed:
                    self._retry_later(pairing)
                else:
                    self._retries.pop(pairing, None)
                self._busy = False
                self._changed.notify_all()

    def _retry_later(self, pairing: str) -> None:
        if self._stopping:
            log.warning("report of pairing=%s left to the next start: stopping", pairing)
            return
        wait = self._retries.get(pairing, (0.0, self._retry_first))[1]
        self._retries[pairing] = (time.monotonic() + wait, min(wait * 2, RETRY_MAX_SECONDS))
        log.warning("report of pairing=%s asked for again in %.1f s", pairing, wait)

    def _next(self) -> str | None:
        with self._changed:
            while not self._pending and not self._stopping:
                self._due_retries()
                if self._pending:
                    break
                due = [at for at, _ in self._retries.values()]
                self._changed.wait(max(0.0, min(due) - time.monotonic()) if due else None)
            if not self._pending:
                return None  # stopping: a failed report is left to the next start
            self._busy = True
            return self._pending.pop(0)

    def _due_retries(self) -> None:
        now = time.monotonic()
        for pairing, (at, _) in self._retries.items():
            if at <= now and pairing not in self._pending:
                self._pending.append(pairing)
