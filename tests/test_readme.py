"""The README's quickstart, run as written on a fresh demo database: every command succeeds and prints what the
README shows (ids, times and dates aside, which differ per run)."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.helpers import ROOT, masked, missing_lines, run_cli

# the README's result ids, by what they name (ours or the users', algorithm, layer): ids are random per database
ROLES = {
    "49a362b4": ("cluster_workers", "hdbscan", 0),
    "909e6a6f": ("cluster_workers", "evoc", 0),
    "855d1db6": ("cluster_workers", "evoc", 1),
    "f1fae566": ("application", "evoc", 0),
}


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


def resolve(db, readme_id: str) -> str:
    made_by, algorithm, layer = ROLES[readme_id]
    rows = json.loads(run_cli("results", "-d", str(db), "--json").stdout)
    return next(
        r["id"] for r in rows if r["made_by"] == made_by and r["algorithm"].split(" ")[0] == algorithm and r["layer"] == layer
    )


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
        args = [resolve(tmp_path / "demo.db", a) if a in ROLES else a for a in args[1:]]
        out = run_cli(*args, cwd=tmp_path)
        assert out.returncode == 0, (command, out.stderr[-2000:])
        lines = out.stdout.splitlines()
        if pipe.strip():
            lines = lines[: int(pipe.split("-")[-1])]
        missing = missing_lines(shown, lines)  # every line the README shows (a shown table may leave columns out with …)
        assert not missing, (command, missing, [masked(x) for x in lines[:12]], library_versions())
    readme_ids = set(re.findall(r"\b[0-9a-f]{8}\b", " ".join(c for c, _ in steps)))
    assert readme_ids <= set(ROLES)
