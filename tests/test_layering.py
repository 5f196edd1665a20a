"""DESIGN §2: `server` imports `agent`; `agent` never imports `server`."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parent.parent / "agent"


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_agent_module_imports_server() -> None:
    offenders = sorted(
        str(p.relative_to(AGENT)) for p in AGENT.rglob("*.py") if "server" in _imported(p)
    )
    assert offenders == []
