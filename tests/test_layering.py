"""The package's layers import downwards only, and no modules import each other in a cycle.

Layers, lowest first: the shared base (errors, stopping, progress, BLAS settings); engines (pure arrays),
db (knows nothing of HDBSCAN) and analysis (pure arrays); run (worker, coordinator); views (read-only);
tools; the CLI; the package's own facade (``cluster_workers.load_result``). Every import counts, top-level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cluster_workers"
RANK = {
    "errors": 0,
    "stopping": 0,
    "progress": 0,
    "blas_env": 0,
    "__init__": 6,  # the package: its facade (load_result)
    "api": 6,  # the library: the functions the commands call, from Python
    "engines": 1,
    "db": 1,
    "analysis": 1,
    "run": 2,
    "views": 3,
    "tools": 4,
    "cli": 5,
    "cli_docs": 6,
    "__main__": 6,
}
APART = {
    ("engines", "db"),
    ("db", "engines"),
    ("analysis", "db"),
    ("analysis", "engines"),
    ("engines", "analysis"),
    ("db", "analysis"),
}


def module_name(path: Path) -> str:
    return ".".join(("cluster_workers", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cluster_workers"):
                if node.module != "cluster_workers":  # `from cluster_workers import blas_env` imports blas_env only
                    found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("cluster_workers"))
        graph[name] = found
    return {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            a, b = layer(module), layer(target)
            if RANK[b] > RANK[a] or (a, b) in APART:
                wrong.append(f"{module} -> {target}")
    return wrong


def cycles_in(graph: dict[str, set[str]]) -> list[str]:
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_every_import_goes_down_or_sideways_within_a_layer():
    assert upward(imports()) == []


def test_no_import_cycle():
    assert cycles_in(imports()) == []


def test_the_checks_can_fail():
    graph = imports()
    assert "cluster_workers.db.catalog" in graph["cluster_workers.db.results"]  # the graph holds real edges
    bad = {**graph, "cluster_workers.db.results": graph["cluster_workers.db.results"] | {"cluster_workers.run.worker"}}
    assert upward(bad) == ["cluster_workers.db.results -> cluster_workers.run.worker"]
    looped = {"cluster_workers.db.a": {"cluster_workers.db.b"}, "cluster_workers.db.b": {"cluster_workers.db.a"}}
    assert cycles_in(looped) == ["cluster_workers.db.a -> cluster_workers.db.b -> cluster_workers.db.a"]
