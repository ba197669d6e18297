"""The reference engine: the ``hdbscan`` package, exactly as a user would call it."""

from __future__ import annotations

from typing import Callable

import numpy as np

from cluster_workers.engines import Clustering, HDBSCANParams
from cluster_workers.engines.cores import CoreDistances


def cluster(data: np.ndarray, params: HDBSCANParams, on_block: Callable[[], object] | None = None) -> Clustering:
    """HDBSCAN of the rows of ``data`` (euclidean), with membership probabilities (``on_block``: unused, one C call)."""
    import hdbscan

    model = hdbscan.HDBSCAN(
        min_cluster_size=params.min_cluster_size,
        min_samples=params.min_samples,
        cluster_selection_epsilon=params.cluster_selection_epsilon,
        allow_single_cluster=params.allow_single_cluster,
        cluster_selection_method=params.cluster_selection_method,
        metric="euclidean",
        core_dist_n_jobs=1,
        gen_min_span_tree=True,  # kept with the result: re-cut without reclustering
    )
    # hdbscan's tree code needs float64 ("Buffer dtype mismatch" on float32).
    x = np.asarray(data, dtype=np.float64)
    labels = model.fit_predict(x)
    return Clustering(
        labels.astype(np.int32, copy=False),
        np.asarray(model.probabilities_, dtype=np.float64),
        {"engine": "reference"},
        tree=np.asarray(model.minimum_spanning_tree_.to_numpy(), dtype=np.float64),  # sorted by weight, as cut
        outlier_scores=np.asarray(model.outlier_scores_, dtype=np.float64),
        cores=kd_tree_cores(x, params.min_samples),
    )


def kd_tree_cores(x: np.ndarray, min_samples: int) -> CoreDistances:
    """Both core distances as the ``hdbscan`` package computes them: a scikit-learn KD-tree, float64."""
    from sklearn.neighbors import KDTree

    k = min(min_samples + 1, x.shape[0])
    dist = KDTree(x).query(x, k=k)[0]
    return CoreDistances(dist[:, k - 1].copy(), dist[:, max(k - 2, 0)].copy())
