"""The house rules a reader relies on, checked over the package's source (no import needed):

- a name used across modules is public: no module imports another module's underscore names;
- no query builder defaults its schema: forgetting it on a current-schema database would query the
  legacy tables silently, so a ``Schema`` parameter never has a default;
- no dead code: every function and class of the package is used somewhere in the package or its benchmarks
  (what typer or SQLAlchemy call by registration or by name aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "cluster_workers"


def _modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_another_modules_underscore_names():
    found = []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cluster_workers"):
                found += [
                    f"{path.relative_to(PACKAGE.parent)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert found == []


def test_no_schema_parameter_has_a_default():
    found = []
    for path, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args
                defaults = dict(zip([a.arg for a in args][len(args) - len(node.args.defaults) :], node.args.defaults))
                defaults.update({a.arg: d for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None})
                for a in args + node.args.kwonlyargs:
                    annotation = ast.unparse(a.annotation) if a.annotation is not None else ""
                    if "Schema" in annotation and a.arg in defaults:
                        found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}({a.arg})")
    assert found == []


FRAMEWORK_HOOKS = {"process_bind_param", "process_result_value"}  # SQLAlchemy calls a TypeDecorator's by name


def test_every_function_and_class_is_used_in_the_package():
    modules = _modules()
    bench = [ast.parse(p.read_text()) for p in sorted((PACKAGE.parent / "bench").rglob("*.py"))]  # benchmarks use the package too
    used: set[str] = set()
    for tree in [*modules.values(), *bench]:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.name.split(".")[-1])
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                used.add(node.value)  # names given as text: __all__, getattr, entry points
    entry_points = (PACKAGE.parent / "pyproject.toml").read_text()
    unused = []
    for path, tree in modules.items():
        for node in tree.body + [n for c in tree.body if isinstance(c, ast.ClassDef) for n in c.body]:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("__"):
                continue
            if node.name in FRAMEWORK_HOOKS or any(
                word in ast.unparse(d)
                for d in node.decorator_list
                for word in ("command", "listens_for", "callback", "property", "compiles")
            ):
                continue  # called by typer or SQLAlchemy, or read as an attribute
            if node.name not in used and node.name not in entry_points:
                unused.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}")
    assert unused == []
