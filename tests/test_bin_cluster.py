"""bin/cluster, the background launcher."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster_workers.views.tables import load_results
from tests.helpers import ROOT

LAUNCHER = ROOT / "bin" / "cluster"


def launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLUSTER_WORKERS_PYTHON": sys.executable}
    return subprocess.run([str(LAUNCHER), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


@pytest.mark.parametrize("bad", ["", "0", "-1", "ten", "3.5"])
def test_bad_argument_is_a_usage_error(tmp_path, bad):
    out = launch(*([bad] if bad else []), cwd=tmp_path)
    assert out.returncode == 1
    assert "usage: bin/cluster" in out.stderr and "positive integer" in out.stderr
    assert not (tmp_path / "logs").exists()


def test_bad_epsilon_is_a_usage_error(tmp_path):
    out = launch("10", "wide", cwd=tmp_path)
    assert out.returncode == 1 and "EPSILON must be a number" in out.stderr
    assert not (tmp_path / "logs").exists()


def test_background_run_prints_pid_writes_log_and_commits(demo_db, tmp_path):
    """The users' launcher order: DOWNSAMPLE then EPSILON."""
    started = time.monotonic()
    out = launch("4", "0.25", "--database-url", str(demo_db), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 10  # returns at once
    pid = int(re.search(r"PID (\d+)", out.stdout).group(1))
    log = Path(tmp_path / re.search(r"log:\s+(\S+)", out.stdout).group(1))
    assert re.fullmatch(r"clustering_\d{8}_\d{6}\.log", log.name) and log.parent.name == "logs"
    assert f"tail -f {log.relative_to(tmp_path)}" in out.stdout
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        pytest.fail("background run did not finish")
    text = log.read_text()
    assert "committed" in text and "counts at downsample=4" in text
    results = load_results(str(demo_db))
    assert {r.model for r in results} == {"STSBMpnet", "STSBRoberta", "Nomic", "Dummy"}  # users' minimum: 2
    assert {r.parameters["cluster_selection_epsilon"] for r in results} == {0.25}


def test_foreground_mode_runs_attached(demo_db, tmp_path):
    out = launch("--foreground", "1000", "--database-url", str(demo_db), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "counts at downsample=1000" in out.stderr
    assert not (tmp_path / "logs").exists()
