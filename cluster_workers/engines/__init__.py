"""Clustering engines: pure functions, numpy arrays in, numpy arrays out. No database, no joblib."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class HDBSCANParams:
    """Resolved HDBSCAN parameters for one sample (no 'auto' values left)."""

    min_cluster_size: int
    min_samples: int
    cluster_selection_epsilon: float = 0.0
    allow_single_cluster: bool = False
    cluster_selection_method: str = "eom"

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_params(
    n: int,
    min_cluster_size: int = 0,
    min_samples: int = 0,
    epsilon: float = 0.0,
    allow_single_cluster: bool = False,
    cluster_selection_method: str = "eom",
) -> HDBSCANParams:
    """Fill in the defaults of SPEC.md: ``min_cluster_size = min_samples = max(2, n // 1000)``.

    Both are capped at ``n - 1`` (HDBSCAN needs more points than ``min_samples``).
    """
    if n < 2:
        raise ValueError(f"need at least 2 vectors to cluster, got {n}")
    auto = max(2, n // 1000)
    mcs = min_cluster_size or auto
    ms = min_samples or mcs
    return HDBSCANParams(
        min_cluster_size=max(2, min(mcs, n)),
        min_samples=max(1, min(ms, n - 1)),
        cluster_selection_epsilon=float(epsilon),
        allow_single_cluster=bool(allow_single_cluster),
        cluster_selection_method=cluster_selection_method,
    )


def l2_normalise(data: np.ndarray) -> np.ndarray:
    """Row-normalise in place (euclidean on unit vectors ranks like cosine); zero rows stay zero."""
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    np.divide(data, norms, out=data, where=norms > 0)
    return data


Engine = Callable[[np.ndarray, HDBSCANParams], np.ndarray]


def get_engine(name: str) -> Engine:
    """The ``cluster(data, params) -> labels`` function of engine ``name``."""
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

    libs = ["numpy", "hdbscan"] + (["scipy", "faiss-cpu"] if name == "fast" else [])
    return {lib: version(lib) for lib in libs}
