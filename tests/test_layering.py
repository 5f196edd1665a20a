"""The package order of docs/architecture.md, enforced: every import of the `invsync` namespace
points down the layers, and no module imports itself back through others.

    foundation (agent/errors, times, files, tomlconf) -> model -> telemetry -> sources
    -> inventory -> exchange -> store -> config -> reconcile -> report -> evidence -> notify
    -> daemon
    -> cli -> server

Every import counts: at module level, inside a function, and under `if TYPE_CHECKING:`, because
each is a dependency a reader must follow and a circle a refactoring can close.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.layers import AGENT_LAYERS, FOUNDATION

ROOT = Path(__file__).resolve().parent.parent
TREES = {"invsync.agent": ROOT / "agent", "invsync.server": ROOT / "server"}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, tree in TREES.items():
        for path in tree.rglob("*.py"):
            parts = path.relative_to(tree).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every `invsync.*` module `path` imports, a `from PACKAGE import MODULE` as MODULE."""
    yield from _imports_in(path.read_text())


def _imports_in(source: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("invsync."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("invsync."):
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in MODULES else node.module


def _graph() -> dict[str, set[str]]:
    return {
        name: {dep for dep in _imports(path) if dep in MODULES and dep != name}
        for name, path in MODULES.items()
    }


def _rank(module: str) -> int:
    """0 for the foundation, then the agent layers in order, then the server above them all."""
    parts = module.split(".")
    if parts[1] == "server":
        return len(AGENT_LAYERS) + 1
    if len(parts) == 2:  # the package `invsync.agent` itself
        return 0
    if parts[2] in FOUNDATION:
        return 0
    return AGENT_LAYERS.index(parts[2]) + 1


def _stray_imports(source: str) -> list[str]:
    """Relative imports, and the old top-level names `agent` and `server`: both bypass the
    namespace (the second would even load a second copy of a module from a checkout)."""
    stray = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            stray.append(f"line {node.lineno}: relative import")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            stray += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in TOP_LEVEL]
    return stray


TOP_LEVEL = ("agent", "server")


def test_imports_go_through_the_namespace() -> None:
    files = [
        *MODULES.values(),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "benchmarks").rglob("*.py"),
    ]
    stray = [f"{path}: {s}" for path in files for s in _stray_imports(path.read_text())]
    assert stray == []


def test_every_agent_module_is_in_a_layer() -> None:
    top = {m.split(".")[2] for m in MODULES if m.startswith("invsync.agent.")}
    assert top == {*FOUNDATION, *AGENT_LAYERS}


def test_imports_point_down_the_layers() -> None:
    upward = sorted(
        f"{module} imports {dep}"
        for module, deps in _graph().items()
        for dep in deps
        if _rank(dep) > _rank(module)
    )
    assert upward == []


def test_no_import_circles() -> None:
    graph = _graph()
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (recursive: the graph is a few hundred modules deep at most)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph[node]):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [{"a", "b"}]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [{"a", "b", "c"}]),
    ],
)
def test_the_circle_finder_finds_circles(
    graph: dict[str, set[str]], expected: list[set[str]]
) -> None:
    assert [c for c in _strongly_connected(graph) if len(c) > 1] == expected


def test_a_lower_layer_importing_a_higher_one_is_caught() -> None:
    source = "from invsync.agent.exchange import envelope\nimport invsync.agent.cli.reconcile\n"
    found = set(_imports_in(source))
    assert found == {"invsync.agent.exchange.envelope", "invsync.agent.cli.reconcile"}
    assert all(_rank(dep) > _rank("invsync.agent.model.record") for dep in found)
    assert _rank("invsync.agent.errors") == 0
    assert _rank("invsync.server.service") > _rank("invsync.agent.cli.reconcile")


def test_stray_imports_are_caught() -> None:
    source = (
        "from . import x\nimport agent.record\nfrom server.cli import main\nimport invsync.v1\n"
    )
    assert _stray_imports(source) == [
        "line 1: relative import",
        "line 2: agent.record",
        "line 3: server.cli",
    ]
