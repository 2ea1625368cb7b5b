"""The import graph of rece_bench has no circle: arrows only go downhill.

Every ``import`` and ``from ... import`` between rece_bench modules counts, at module level and inside functions
(an import moved into a function still makes a circle, only a hidden one). A package resolves to its
``__init__``; ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rece_bench

ROOT = Path(rece_bench.__file__).parent


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported_names(node: ast.AST, package: str, modules: dict) -> list[str]:
    """The rece_bench modules one import statement names (relative imports resolved against ``package``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def owning_module(name: str, modules: dict) -> str | None:
    """The module a dotted name lives in: itself, or its nearest enclosing module."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {imported rece_bench module: line of the first such import}."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for imported in imported_names(node, package, modules):
                target = owning_module(imported, modules) if imported.startswith("rece_bench") else None
                if target is not None and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One circle of the graph as [a, b, ..., a], or None (a depth-first search for an edge back onto the path)."""
    state: dict[str, str] = {}  # absent: unvisited; "open": on the current path; "done": no circle below

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [node, target] if target in path else path + [node, target]
            if target not in state:
                found = visit(target, path + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [])
            if found:
                return found
    return None


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return "\n".join(f"  {a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle[:-1], cycle[1:], strict=True))


def test_no_import_circle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle among rece_bench modules:\n" + describe(cycle, graph)


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "rece_bench.training.driver" in graph["rece_bench.budget.fit"]  # imported inside train_within_budget
    assert "rece_bench.training.step" in graph["rece_bench.budget.probe"]  # imported inside measure_peak
    assert "rece_bench.losses.base" in graph["rece_bench.losses"]  # a package's __init__ is a module


def test_find_cycle_finds_a_circle():
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 2}}) is None
