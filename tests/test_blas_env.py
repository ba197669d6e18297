"""OpenBLAS's idle threads sleep after a GEMM instead of spinning on the cores the numba kernels need."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# CPU time the process burns while its main thread sleeps 0.2 s right after a multi-threaded GEMM:
# idle BLAS threads that spin show up here (OpenBLAS's default spins ~0.1 s per thread)
IDLE_CPU = """
import time
import cluster_workers  # first, as the CLI and every worker process import it
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
assert any(p["internal_api"] == "openblas" for p in threadpool_info()), "not OpenBLAS"
x = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)
with threadpool_limits(2, user_api="blas"):
    burnt = []
    for _ in range(3):
        x @ x
        t = time.process_time()
        time.sleep(0.2)
        burnt.append(time.process_time() - t)
print(min(burnt), max(burnt))
"""


def idle_cpu_after_gemm(env: dict[str, str]) -> tuple[float, float]:
    """Least and most CPU time burnt over three sleeps (each after its own GEMM)."""
    out = subprocess.run([sys.executable, "-c", IDLE_CPU], capture_output=True, text=True, timeout=120,
                         env=env, cwd=ROOT)  # fmt: skip
    if "not OpenBLAS" in out.stderr:
        pytest.skip("numpy is not linked against OpenBLAS here")
    assert out.returncode == 0, out.stderr[-2000:]
    least, most = (float(v) for v in out.stdout.split())
    return least, most


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS starts no second thread to spin")
def test_idle_blas_threads_sleep_unless_the_user_chose_otherwise():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    ours, _ = idle_cpu_after_gemm(env)
    _, spinning = idle_cpu_after_gemm({**env, "OPENBLAS_THREAD_TIMEOUT": "30"})  # the user's own value is kept
    assert ours < 0.02, f"idle BLAS threads burnt {ours:.3f} s of CPU while the process slept 0.2 s"
    assert spinning > 0.05, f"with the user's OPENBLAS_THREAD_TIMEOUT=30 the threads should spin ({spinning:.3f} s)"


def test_worker_processes_inherit_the_setting():
    code = (
        "import cluster_workers, joblib, os\n"
        "print(joblib.Parallel(n_jobs=2, backend='loky')(joblib.delayed(os.getenv)('OPENBLAS_THREAD_TIMEOUT') for _ in range(2)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['4', '4']"
