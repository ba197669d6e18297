"""The README's quickstart, run as written on a fresh demo database: every command succeeds and prints what the
README shows (ids, times and dates aside, which differ per run)."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.helpers import ROOT, masked, missing_lines, run_cli


def quickstart() -> list[tuple[str, list[str]]]:
    """``(command, shown output lines)`` of the README's console block."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Quickstart", 1)[1].split("```console", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.strip("\n").splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def library_versions() -> dict[str, str]:
    """The versions behind the numbers (EVoC's output moves with its numeric stack: the README is regenerated then)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("evoc", "numba", "numpy", "scikit-learn", "hdbscan")}


@pytest.mark.slow
def test_the_quickstart_runs_as_written(tmp_path):
    steps = quickstart()
    assert len(steps) >= 6
    for command, shown in steps:
        cmd, _, pipe = command.split("#")[0].partition("|")
        args = shlex.split(cmd.split("#")[0])
        assert args[0] == "cluster-workers"
        out = run_cli(*args[1:], cwd=tmp_path)
        assert out.returncode == 0, (command, out.stderr[-2000:])
        lines = out.stdout.splitlines()
        if pipe.strip():
            lines = lines[: int(pipe.split("-")[-1])]
        missing = missing_lines(shown, lines)  # every line the README shows (a shown table may leave columns out with …)
        assert not missing, (command, missing, [masked(x) for x in lines[:12]], library_versions())
    readme_ids = set(re.findall(r"\b[0-9a-f]{8}\b", " ".join(c for c, _ in steps)))
    assert readme_ids == set(), readme_ids  # a reader types the commands as they are: no id of another machine
