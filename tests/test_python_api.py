"""docs/python.md runs as written: each ``python`` block in order, in one namespace, on a fresh demo database;
the library calls the same functions the commands call."""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re

import pytest

from cluster_workers.tools.demo import build_demo_database
from tests.helpers import ROOT


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), flags=re.S)


@pytest.mark.slow
def test_the_python_page_runs_as_written(tmp_path):
    build_demo_database(str(tmp_path / "demo.db"), embeddings=1_500, seed=7, schema="current")
    namespace: dict = {}
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for code in blocks():
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102 - the page's own code
            assert printed.getvalue().strip(), code  # every block shows something
    finally:
        os.chdir(here)
    result = namespace["result"]
    assert result.summary.model == "Nomic256" and len(result.labels) == result.summary.sample_count
    assert namespace["clustering"].labels.max() == 2  # three clusters found in the array
    assert namespace["largest"].size == max(c.size for c in namespace["db"].clusters(result.id.hex))


def test_the_library_calls_what_the_commands_call():
    """Each method of ``Experiments`` imports the function its command's module imports (the import graph)."""
    api = ast.parse((ROOT / "cluster_workers" / "api.py").read_text())
    cli = "".join(
        (ROOT / "cluster_workers" / "cli" / name).read_text() for name in ("clustering.py", "reading.py", "analyses.py")
    )
    called = {a.name for node in ast.walk(api) if isinstance(node, ast.ImportFrom) for a in node.names}
    for name in ("load_results", "load_clusters", "run_clustering", "assign", "load_states", "load_kinetics", "publish"):
        assert name in called, name
        assert re.search(rf"\b{name}\b", cli), name  # imported by name, or called through its module
