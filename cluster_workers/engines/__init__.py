"""Clustering engines: pure functions, numpy arrays in, numpy arrays out. No database, no joblib.

Every engine is ``cluster(data, params) -> Clustering`` on L2-normalised rows:

- ``reference``: the ``hdbscan`` package, as a user would call it (the ground truth);
- ``fast``: exact neighbours, the exact mutual-reachability MST, hdbscan's tree code
  (see :mod:`cluster_workers.engines.fast`).

``params`` are in the ``hdbscan`` package's convention (``min_samples`` does not
count the point itself); :mod:`cluster_workers.run.params` converts the application's values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cluster_workers.errors import BadVectorError

if TYPE_CHECKING:
    from cluster_workers.engines.cores import CoreDistances


@dataclass(frozen=True)
class HDBSCANParams:
    """HDBSCAN parameters exactly as an engine (and the ``hdbscan`` package) takes them."""

    min_cluster_size: int
    min_samples: int
    cluster_selection_epsilon: float = 0.0
    allow_single_cluster: bool = False
    cluster_selection_method: str = "eom"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Clustering:
    """An engine's answer: labels (-1 = outlier), membership probabilities, the MST they were cut from, and how."""

    labels: np.ndarray  # (n,) int32
    probabilities: np.ndarray  # (n,) float64 in [0, 1]; 0 for outliers
    info: dict = field(default_factory=dict)
    tree: np.ndarray | None = None  # (n - 1, 3) MST edges (row a, row b, weight) sorted by weight: re-cut without reclustering
    outlier_scores: np.ndarray | None = None  # (n,) GLOSH scores (hdbscan's definition)
    cores: "CoreDistances | None" = None  # per row both core distances (:mod:`.cores`): density, prediction


def l2_normalise(data: np.ndarray) -> np.ndarray:
    """Row-normalise in place (euclidean on unit vectors ranks like cosine).

    A zero vector has no direction: it is rejected (:class:`BadVectorError` naming
    its row), because the engines would otherwise place it arbitrarily.
    """
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise BadVectorError(f"{zero.size} zero vector(s) cannot be normalised (first at row {int(zero[0])})")
    np.divide(data, norms, out=data)
    return data
