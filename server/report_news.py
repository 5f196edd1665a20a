"""Long polls for a pairing's report (issue 13): an agent waits on the server, not in a loop.

An agent waits twice a cycle: for the report on its new snapshot (made off the push, by the
report worker), then, once it signed that report, for the peer's signature or a newer report on
the same snapshot. Asking again every 200 ms cost a call and a report body each time; a waiting
call is answered as soon as a report is stored or signed (`ReportNews.changed`), or when its
time is up, with the latest report as it stands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from invsync.agent.errors import ReportError
from invsync.agent.report.body import parse_report_body
from invsync.server.storage import StoredReport

# The longest one call waits, whatever it asks: a waiting call holds a server thread.
MAX_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class ReportWait:
    """What a waiting caller waits for (GetReportRequest): a report naming its snapshot of
    payload SHA-256 `naming` (hex) and, if `past` is set, another than report `past`, or that
    one signed by every signer it lists."""

    party: str
    naming: str
    past: str
    seconds: float

    def met_by(self, stored: StoredReport) -> bool:
        try:
            body = parse_report_body(stored.envelope.payload)
        except ReportError:
            return False  # an older body format: the caller reads it as it stands
        side = body.root if body.root.party == self.party else body.subordinate
        if side.digest != self.naming:
            return False
        if not self.past or stored.report_id != self.past:
            return True
        signed = {s.keyid for s in stored.envelope.signatures}
        return all(signer.keyid in signed for signer in body.signers)


class ReportNews:
    """Wakes the calls waiting for a report when one is stored or signed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()

    def changed(self) -> None:
        """A report was stored or signed. Called after its transaction committed, never while
        holding the store's lock (a waiter reads the store holding this one)."""
        with self._changed:
            self._changed.notify_all()

    def wait(
        self, latest: Callable[[], StoredReport | None], wait: ReportWait
    ) -> StoredReport | None:
        """The latest report once it meets `wait`, or as it stands when the time is up."""
        deadline = time.monotonic() + min(wait.seconds, MAX_WAIT_SECONDS)
        with self._changed:
            while True:
                stored = latest()
                left = deadline - time.monotonic()
                if (stored is not None and wait.met_by(stored)) or left <= 0:
                    return stored
                self._changed.wait(left)
