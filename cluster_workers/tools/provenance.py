"""Where a figure comes from: the machine (cores, CPU, BLAS kernels, library versions) and the commit.

Every benchmark's JSON carries both (``bench`` and the scripts in bench/ import them from here).
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("numpy", "scipy", "scikit-learn", "hdbscan", "joblib", "sqlalchemy", "psycopg", "numba", "threadpoolctl")


def source_commit(checkout: Path | None = None) -> str | None:
    """The commit of ``checkout`` (default: the one this package is imported from), with ``+changes`` when the
    tree differs from it; None outside a git checkout."""
    import subprocess

    here = checkout or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def machine_info() -> dict:
    """Cores, CPU, BLAS kernels and library versions, so numbers can be compared honestly."""
    from threadpoolctl import threadpool_info

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = version(lib)
        except PackageNotFoundError:
            pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "blas": [
            {k: info.get(k) for k in ("internal_api", "version", "architecture", "threading_layer", "num_threads")}
            for info in threadpool_info()
        ],
        "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))},
        "versions": versions,
    }
