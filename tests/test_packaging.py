"""The package as a user installs it: a wheel, in a fresh virtual environment, outside the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.network]  # the default run (CI) includes it


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)], cwd=tmp_path)
    (wheel,) = wheels.glob("cluster_workers-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    run([str(py), "-m", "pip", "install", "--quiet", str(wheel)], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    cli = env_dir / "bin" / "cluster-workers"
    # the default config travels inside the package, not beside a checkout
    found = run(
        [str(py), "-c", "from cluster_workers.run.config import DEFAULT_CONFIG_PATH as p; print(p, p.exists())"], cwd=work
    )
    assert found.stdout.strip().endswith("True") and str(ROOT) not in found.stdout
    run([str(cli), "--version"], cwd=work)
    run([str(cli), "demo-db", "experiments.db", "--embeddings", "1285"], cwd=work)
    out = run([str(cli), "cluster", "-d", "experiments.db", "--downsample", "2"], cwd=work)
    assert "clustered 4 model(s)" in out.stdout
    listing = json.loads(run([str(cli), "results", "-d", "experiments.db", "--json"], cwd=work).stdout)
    assert {r["model"] for r in listing} == {"STSBMpnet", "STSBRoberta", "Nomic", "Dummy"}
    assert all(r["parameters"]["cluster_selection_epsilon"] == 0.5 for r in listing)  # the shipped defaults
