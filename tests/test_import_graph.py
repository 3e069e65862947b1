"""The package's layering: no import cycle between its parts, and no CLI in the library."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import autoprune

PACKAGE = Path(autoprune.__file__).parent


def _part(module: str) -> str:
    """``autoprune.search.study`` -> ``search``: subpackages and top-level modules are the units."""
    return module.split(".")[1]


def import_graph() -> dict[str, set[str]]:
    """Which parts each part imports, counting imports inside functions too (a lazy import is
    still a dependency: it only hides a cycle)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if len(parts) < 2 or parts[1] == "__init__":
            continue  # the top-level __init__ only re-exports the public API
        source = parts[1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoprune."):
                target = _part(node.module)
                if target != source:
                    graph[source].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_parts_of_the_package_import_each_other_without_a_cycle() -> None:
    graph = import_graph()
    assert {"models", "train", "search", "checkpoint"} <= set(graph)  # the scan sees them
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]  # the check can fail


def test_importing_the_library_pulls_in_no_cli_package() -> None:
    code = "import sys, autoprune; print(sorted({'typer', 'rich'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
