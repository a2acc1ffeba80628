"""No import circle anywhere in ``src/ewspipe``.

import-linter's layers contract only sees imports between layers; a circle inside one package
(``catalog/`` used to be one, held together by TYPE_CHECKING and function-level imports) passes
it. This test reads every module with :mod:`ast` and follows every import of an ewspipe module,
wherever it is written: module level, under ``if TYPE_CHECKING``, inside functions. Importing a
submodule runs its package's ``__init__`` but that is not counted as an edge (every package
would be a circle with its own modules), so a package re-exporting its modules is fine.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Circles allowed for now, each as the sorted tuple of its modules. Empty: there are none,
#: and a new one fails the test with its modules and the lines that import each other.
KNOWN_CYCLES: frozenset[tuple[str, ...]] = frozenset()


def _modules(src: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / "ewspipe").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _target(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """The module ``name`` refers to: itself, or the nearest enclosing module
    (``ewspipe.catalog.loader.Catalog`` -> ``ewspipe.catalog.loader``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(
    module: str, path: Path, package: bool, modules: dict[str, tuple[Path, bool]]
) -> Iterator[tuple[str, int]]:
    """(imported ewspipe module, line) for every import statement anywhere in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if package else -1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            # ``from pkg import sub`` imports the module pkg.sub; ``from mod import name``, mod
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin
                     for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "ewspipe":
                target = _target(name, modules)
                if target is not None and target != module:
                    yield target, node.lineno


def import_graph(src: Path) -> dict[str, dict[str, list[int]]]:
    """module -> {imported module: [lines]} over the ewspipe modules below ``src``."""
    modules = _modules(src)
    graph: dict[str, dict[str, list[int]]] = {}
    for module, (path, package) in modules.items():
        edges: dict[str, list[int]] = {}
        for target, line in _imports(module, path, package, modules):
            edges.setdefault(target, []).append(line)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[tuple[str, ...]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(tuple(sorted(component)))
    return sorted(found)


def _describe(cycle: tuple[str, ...], graph: dict[str, dict[str, list[int]]]) -> str:
    lines = [" <-> ".join(cycle)]
    for module in cycle:
        for target, at in sorted(graph[module].items()):
            if target in cycle:
                where = ", ".join(map(str, sorted(set(at))))
                lines.append(f"  {module} imports {target} (line {where})")
    return "\n".join(lines)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A circle closed only by a function-level or TYPE_CHECKING import is still found."""
    pkg = tmp_path / "ewspipe" / "pkg"
    pkg.mkdir(parents=True)
    (tmp_path / "ewspipe" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from ewspipe.pkg.a import A\n")
    (pkg / "a.py").write_text("from .b import B\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from ewspipe.pkg import a\nB = 2\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    import ewspipe.pkg.d\n")
    (pkg / "d.py").write_text("from ewspipe.pkg.c import x\n")
    # importing a submodule runs the package __init__ (which imports a), but is no edge to it
    (pkg / "e.py").write_text("from ewspipe.pkg.a import A\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [("ewspipe.pkg.a", "ewspipe.pkg.b"), ("ewspipe.pkg.c", "ewspipe.pkg.d")]
    assert "line 2" in _describe(("ewspipe.pkg.a", "ewspipe.pkg.b"), graph)


def test_no_import_circle_in_src() -> None:
    graph = import_graph(SRC)
    assert len(graph) > 50, "the walk found too few modules; is SRC right?"
    found = cycles(graph)
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, "import circle(s) in src/ewspipe; break them (a leaf module for what both " \
        "sides share), do not hide them in functions or TYPE_CHECKING:\n" + "\n".join(
            _describe(c, graph) for c in new)
    gone = sorted(KNOWN_CYCLES - set(found))
    if gone:
        pytest.fail(f"allowed circle(s) no longer exist; remove them from KNOWN_CYCLES: {gone}")
