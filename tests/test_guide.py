"""docs/guide.md's console blocks, run as written on the database each names: every command's exit status is what
the block shows (an ``error:`` line: a refusal, otherwise success) and every line shown is printed (ids, times,
dates, rates and memory peaks aside; a line may stop at ``…``, and ``…`` / ``...`` lines stand for what was left out).

A block is marked ``<!-- example: SCHEMA DOWNSAMPLE -->``: the database ``bin/demo`` builds in that schema
(``demo/experiments.db``, or ``demo/legacy.db`` for the legacy one), clustered at that downsample. Blocks with
the same mark share one database, in the guide's order.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, masked, missing_lines, run_cli

BLOCK = re.compile(r"<!-- example: (legacy|current) (\d+) -->\n```console\n(.*?)\n```", re.S)


def examples() -> list[tuple[str, int, list[tuple[str, list[str]]]]]:
    """``(schema, downsample, [(command, shown lines)])`` per marked block, in the guide's order."""
    out = []
    for schema, downsample, body in BLOCK.findall((ROOT / "docs" / "guide.md").read_text()):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        out.append((schema, int(downsample), steps))
    return out


def left_out(line: str) -> bool:
    """A shown line that stands for output left out of the guide."""
    text = line.strip()
    return not text or text.startswith(("…", "..."))


def build(where: Path, schema: str, downsample: int) -> None:
    """What ``bin/demo DOWNSAMPLE`` builds (``CLUSTER_WORKERS_DEMO_SCHEMA=SCHEMA``), in ``where``."""
    db = where / "demo" / ("legacy.db" if schema == "legacy" else "experiments.db")
    db.parent.mkdir(parents=True)
    for args in (["demo-db", str(db), "--schema", schema], ["cluster", "-d", str(db), "--downsample", str(downsample)]):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr[-2000:]


def test_the_guide_marks_its_blocks():
    blocks = examples()
    assert len(blocks) >= 9 and sum(len(steps) for *_, steps in blocks) >= 18
    assert {schema for schema, *_ in blocks} == {"legacy", "current"}


@pytest.mark.slow
@pytest.mark.parametrize("schema,downsample", sorted({(s, d) for s, d, _ in examples()}))
def test_the_guide_runs_as_written(schema, downsample, tmp_path):
    build(tmp_path, schema, downsample)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for s, d, steps in examples():
        if (s, d) != (schema, downsample):
            continue
        for command, shown in steps:
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
            refused = any(line.startswith("error:") for line in shown)
            assert (done.returncode != 0) == refused, (command, done.returncode, done.stderr[-2000:])
            printed = (done.stdout + done.stderr).splitlines()
            missing = missing_lines(shown, printed, skip=left_out)
            assert not missing, (command, missing, [masked(x) for x in printed[:20]])
