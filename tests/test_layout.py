"""The package's imports form no cycle and point one way, down the layers README describes.

Every import counts, wherever it is written: at module level, inside a function, or under
``if TYPE_CHECKING``. A function-level import only delays a cycle, it does not remove it.
``from package import name`` counts as importing the package's ``__init__`` too (it runs it,
and reads names from it while it may be half-initialised), as well as ``package.name`` when
that is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import its own layer and the layers below it, never above.
# The longest matching prefix decides a module's layer; the package root is `deeprec` alone.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("deeprec.errors", "deeprec.atomic", "deeprec.safe_files")),
    ("model", ("deeprec.model",)),
    ("data", ("deeprec.data", "deeprec.frames")),
    ("kernels", ("deeprec.kernels",)),
    ("step", ("deeprec.step",)),
    ("train", ("deeprec.train",)),
    ("queries", ("deeprec.recommend",)),
    (
        "estimator",
        (
            "deeprec",
            "deeprec.base",
            "deeprec.estimator",
            "deeprec.ensemble",
            "deeprec.ensemble_config",
            "deeprec.teacher",
            "deeprec.baselines",
            "deeprec.selection",
            "deeprec.model_selection",
            "deeprec.presets",
        ),
    ),
    (
        "applications",
        (
            "deeprec.recommend.export",
            "deeprec.recommend.honesty",
            "deeprec.recommend.metrics",
            "deeprec.experiments",
        ),
    ),
    ("runs", ("deeprec.runs",)),
    ("front ends", ("deeprec.serve", "deeprec.quickstart")),
    ("cli", ("deeprec.cli", "deeprec.__main__")),
)

# Known wrong-way edges, each with the reason it stays; every entry must still exist (the
# test fails once it is gone, so the list cannot go stale). Empty: none is known.
ALLOWED: frozenset[tuple[str, str]] = frozenset()


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package __init__) for every module under src/."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the deeprec modules it imports anywhere in its file."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for name in _targets(module, is_package, node):
                while name and name not in modules:  # a name imported from a module
                    name = name.rpartition(".")[0]
                if name and name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def layer_of(module: str) -> int:
    """Index of `module`'s layer in LAYERS (longest prefix wins)."""
    best, best_len = None, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            exact_only = prefix == "deeprec"
            matches = module == prefix or (not exact_only and module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it to LAYERS here and to README")
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
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
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _without_allowed(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {a: {b for b in edges if (a, b) not in ALLOWED} for a, edges in graph.items()}


def test_the_package_has_no_import_cycle() -> None:
    found = cycles(_without_allowed(import_graph()))
    assert not found, f"import cycles: {found}"


def test_imports_point_down_the_layers() -> None:
    graph = _without_allowed(import_graph())
    wrong = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, edges in sorted(graph.items())
        for b in sorted(edges)
        if layer_of(b) > layer_of(a)
    ]
    assert not wrong, "imports pointing up the layers:\n" + "\n".join(wrong)


def test_every_allowed_exception_still_exists() -> None:
    graph = import_graph()
    stale = sorted((a, b) for a, b in ALLOWED if b not in graph.get(a, set()))
    assert not stale, f"remove these entries from ALLOWED, the imports are gone: {stale}"


def test_the_checks_catch_a_cycle_and_an_upward_import() -> None:
    graph = {"deeprec.a": {"deeprec.b"}, "deeprec.b": {"deeprec.c"}, "deeprec.c": {"deeprec.a"}}
    assert cycles(graph) == [["deeprec.a", "deeprec.b", "deeprec.c"]]
    assert cycles({"deeprec.a": {"deeprec.b"}, "deeprec.b": set()}) == []
    assert layer_of("deeprec.train.trainer") < layer_of("deeprec.estimator")
    assert layer_of("deeprec.recommend.topn") < layer_of("deeprec.base")
    assert layer_of("deeprec.recommend.export") > layer_of("deeprec.base")
    assert layer_of("deeprec.base") < layer_of("deeprec.runs.training") < layer_of("deeprec.cli")
    with pytest.raises(AssertionError, match="no layer"):
        layer_of("deeprec_other.x")


def test_function_level_and_type_checking_imports_count(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from deeprec.base import Recommender\n"
        "def f():\n    from deeprec.train import trainer\n"
    )
    tree = ast.parse(source)
    names = [
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in _targets("deeprec.x", False, node)
    ]
    assert "deeprec.base" in names
    assert "deeprec.train" in names and "deeprec.train.trainer" in names
