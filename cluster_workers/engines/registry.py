"""Engines by name, and the library versions recorded with a result."""

from __future__ import annotations

from typing import Callable

import numpy as np

from cluster_workers.engines import Clustering, HDBSCANParams

Engine = Callable[[np.ndarray, HDBSCANParams], Clustering]


def get_engine(name: str) -> Engine:
    """The ``cluster(data, params) -> Clustering`` function of engine ``name``."""
    if name == "reference":
        from cluster_workers.engines.reference import cluster
    elif name == "fast":
        from cluster_workers.engines.fast import cluster
    else:
        raise ValueError(f"unknown engine {name!r}")
    return cluster


def engine_versions(name: str) -> dict[str, str]:
    """Library versions that made a result, recorded in ``parameters``."""
    from importlib.metadata import version

    libs = ["numpy", "hdbscan"] + (["numba"] if name == "fast" else [])
    return {lib: version(lib) for lib in libs}
