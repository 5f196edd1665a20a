"""docs/architecture.md is the map of the house: it names every module, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from tests.layers import AGENT_LAYERS

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
RULES = ROOT / "agent" / "reconcile" / "rules"
NAMED = set(re.findall(r"`([\w/*]+\.py)`", DOC))
LAYERS_BLOCK = DOC.split("## Layers", 1)[1].split("\n\n")[2]


def _documented_as(path: Path) -> str:
    if path.is_relative_to(ROOT / "server"):
        return str(path.relative_to(ROOT))
    return str(path.relative_to(ROOT / "agent"))


def test_every_module_is_on_the_map() -> None:
    missing = []
    for path in sorted([*(ROOT / "agent").rglob("*.py"), *(ROOT / "server").rglob("*.py")]):
        if path.name == "__init__.py" and path.parent != RULES:
            continue
        if path.parent == RULES and path.name not in {"__init__.py", "context.py"}:
            # The rules share one row that names each module.
            if f"`{path.stem}`" not in DOC:
                missing.append(str(path.relative_to(ROOT)))
            continue
        if _documented_as(path) not in NAMED:
            missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_every_module_on_the_map_exists() -> None:
    gone = sorted(
        name
        for name in NAMED
        if "*" not in name
        # agent modules are named from agent/; server/ and tests/ paths from the top
        and not (ROOT / name).exists()
        and not (ROOT / "agent" / name).exists()
    )
    assert gone == []


def test_the_layers_on_the_map_are_the_enforced_ones() -> None:
    drawn = [line.split()[0] for line in LAYERS_BLOCK.splitlines()]
    assert drawn == ["foundation", *AGENT_LAYERS, "server"]
