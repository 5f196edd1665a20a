"""The layers of `invsync.agent`, lowest first, as docs/architecture.md draws them:
tests/test_layering.py enforces them on the code, tests/test_architecture_doc.py on the doc."""

from __future__ import annotations

FOUNDATION = ("errors", "times", "files", "tomlconf", "kept", "gc_pause")
AGENT_LAYERS = (
    "model",
    "telemetry",
    "sources",
    "inventory",
    "exchange",
    "store",
    "config",
    "reconcile",
    "report",
    "evidence",
    "notify",
    "daemon",
    "cli",
)
