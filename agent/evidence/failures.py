"""The two ways an evidence bundle fails: it cannot be read (exit 2), or a check fails (exit 1).

A failed check names the check, from `CHECKS` in the order `verify` runs them, and where it
failed: the entry index, the checkpoint or the file. Only the first failure is reported: once
one check fails, nothing after it in the bundle should be relied on.
"""

from __future__ import annotations

from invsync.agent.errors import InvsyncError

# Every check, in the order they run (docs/evidence.md).
CHECKS = (
    "manifest",
    "checkpoint-signature",
    "fork",
    "consistency",
    "inclusion",
    "scope",
    "signature",
    "chain",
    "receipt",
    "report",
)


class BundleError(InvsyncError):
    """An evidence bundle cannot be read: missing, not a bundle, or a file is malformed."""

    hint = "Check the path, or ask for the bundle again (`invsync evidence export`)."


class ExportError(InvsyncError):
    """An evidence bundle cannot be exported: the log is empty, the scope unknown, or what was
    fetched does not verify."""

    hint = (
        "Check the configuration and the pairing name; if what the server sent does not "
        "verify, keep the message as evidence and tell the exchange operator."
    )


class CheckFailed(InvsyncError):
    """A check of an evidence bundle failed; the message names the check and where."""

    hint = (
        "Nothing in this bundle should be relied on. Check the pins (each key id obtained out "
        "of band); keep the bundle as evidence and ask the exchange operator and both parties."
    )

    def __init__(self, check: str, where: str, detail: str) -> None:
        if check not in CHECKS:
            raise ValueError(f"unknown check {check!r}")
        super().__init__(f"{check} check failed at {where}: {detail}")
        self.check = check
        self.where = where
        self.detail = detail


def entry(index: int) -> str:
    """How a failure names an entry of the log."""
    return f"entry {index}"
