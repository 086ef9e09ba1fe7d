"""Fail when modules of ``tunekit`` import each other in a cycle (``nox -s lint``).

Every import counts, those inside functions included: a function-level import hides a cycle
from Python's import machinery but not from the design. Imports under ``if TYPE_CHECKING:``
are left out (they never run; they exist for annotations only). The graph comes from grimp
(import-linter's engine); each strongly connected group of modules is reported with one
cycle through it and the lines that make it.

Usage: ``python tools/check_import_cycles.py [package]`` (default ``tunekit``); exit status 1
when there is a cycle.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from functools import cache
from pathlib import Path

import grimp

#: imports left out of the check, each with why; keep this empty (the ONNX verifier used to
#: reach ``Run`` through ``OnnxRun``; it now decodes through :mod:`tunekit.onnx_runtime`)
ALLOWED: set[tuple[str, str]] = set()


@cache
def _type_checking_lines(path: Path) -> frozenset[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) blocks."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return frozenset(lines)


def _path(module: str, root: Path) -> Path:
    base = root.joinpath(*module.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def runtime_graph(package: str) -> dict[str, dict[str, list[int]]]:
    """importer → imported → line numbers, for imports that run (not TYPE_CHECKING)."""
    graph = grimp.build_graph(package, include_external_packages=False)
    spec = importlib.util.find_spec(package)  # found, not imported: lint installs no torch
    root = Path(spec.origin if spec and spec.origin else package).parent
    edges: dict[str, dict[str, list[int]]] = {}
    for importer in sorted(graph.modules):
        skip = _type_checking_lines(_path(importer, root))
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            details = graph.get_import_details(importer=importer, imported=imported)
            lines = sorted({d["line_number"] for d in details} - skip)
            if lines and (importer, imported) not in ALLOWED:
                edges.setdefault(importer, {})[imported] = lines
    return edges


def cycles(edges: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """One cycle per strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    found = []
    for group in groups:
        start = min(group)
        # shortest path back to start inside the group (breadth first)
        prev: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in prev:
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, {})):
                    if w in group and w not in prev:
                        prev[w] = v
                        nxt.append(w)
            frontier = nxt
        path = [start]
        while len(path) == 1 or path[-1] != start:
            path.append(prev[path[-1]])
        found.append([*reversed(path)])
    return found


def main(argv: list[str]) -> int:
    package = argv[0] if argv else "tunekit"
    edges = runtime_graph(package)
    found = cycles(edges)
    for cycle in found:
        print(f"import cycle among {package} modules:")
        for a, b in zip(cycle, cycle[1:]):
            lines = ", ".join(map(str, edges[a][b]))
            print(f"  {a} -> {b}  ({_path(a, Path(package)).as_posix()} line {lines})")
    if found:
        print(
            f"{len(found)} import cycle(s); move the shared code to a lower-level module "
            "(or pass a function in) so that imports point one way"
        )
        return 1
    print(f"no import cycles among {package} modules ({len(edges)} importing modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
