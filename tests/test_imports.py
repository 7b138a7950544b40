"""Imports flow one way: surfaces -> queue -> integrations -> engine -> the worker's root (config,
runtime, keys, logs, errors, store) -> connectors. No circle anywhere, no connector importing the
worker, and an import inside a function only for an optional extra, with a comment saying so. In
tests/, a module imports no other test module: what tests share is in the tests/helpers package."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
HELPERS = "tests.helpers"
LAYERS = ("connectors", "worker", "worker.engine", "worker.integrations", "worker.queue", "worker.surfaces")
ENTRY_POINTS = {"worker.__main__"}  # `python -m worker` runs the command line: above every layer


def modules() -> dict[str, Path]:
    """Every module of worker/ and connectors/, by dotted name."""
    found = {}
    for package in ("worker", "connectors"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            if "migrations" not in parts:
                found[name] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(module imported, the statement, whether it sits inside a function) for each project import."""
    tree = ast.parse(path.read_text())
    nested = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
              for node in ast.walk(fn) if node is not fn}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        for name in names:
            if name in known:
                yield name, node, id(node) in nested


def layer(module: str) -> int:
    """How high a module stands: the deepest layer whose package holds it."""
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level."""
    known = modules()
    return {name: {imported for imported, _, inside in imports(path, known) if not inside and imported != name}
            for name, path in known.items()}


def test_no_circle() -> None:
    """No two modules import each other, directly or through others (at module level)."""
    edges, circles = graph(), []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_imports_point_down_the_layers() -> None:
    """No module imports one of a higher layer: connectors never import the worker, the engine never
    a surface or the queue."""
    upward = [f"{name} -> {imported}" for name, targets in graph().items() if name not in ENTRY_POINTS
              for imported in targets if layer(imported) > layer(name)]
    assert upward == []


def test_imports_inside_functions_are_optional_extras_with_a_comment() -> None:
    """An import inside a function loads an optional extra on demand and says so on its line."""
    known = modules()
    silent = []
    for path in known.values():
        lines = path.read_text().splitlines()
        for imported, node, inside in imports(path, known):
            if inside and "#" not in lines[node.lineno - 1]:
                silent.append(f"{path.relative_to(ROOT)}:{node.lineno} -> {imported}")
    assert silent == []


def is_module(name: str) -> bool:
    """Whether a dotted name is a module or package of the project's tree (tests/ included)."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of_tests(path: Path) -> Iterator[tuple[str, int]]:
    """(module, line) for each module of tests/ the file imports, relative imports resolved."""
    package = path.relative_to(ROOT).parent.parts
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{module}.{alias.name}" if is_module(f"{module}.{alias.name}") else module
                     for alias in node.names]
        else:
            continue
        yield from ((name, node.lineno) for name in names if name == "tests" or name.startswith("tests."))


def test_tests_import_no_test_module_but_the_helpers() -> None:
    """No test module or conftest imports a module of tests/ other than the tests.helpers package."""
    strays = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in sorted(TESTS.rglob("*.py"))
              for name, line in imports_of_tests(path) if name != HELPERS and not name.startswith(HELPERS + ".")]
    assert strays == []
