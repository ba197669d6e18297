"""One medoid per cluster, computed in linear time and memory.

For unit vectors the member that minimises the summed *squared* euclidean
distance to all other members is the member with the largest dot product with
the cluster's mean vector (``sum |x - y|^2 = 2m - 2 x . sum(y)``), so it needs
no pairwise matrix, whatever the cluster size.
"""

from __future__ import annotations

import numpy as np


def medoid_indices(data: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row index of the medoid of each cluster ``0..labels.max()`` (int64 array)."""
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    medoids = np.empty(n_clusters, dtype=np.int64)
    if n_clusters == 0:
        return medoids
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, np.arange(n_clusters), side="left")
    ends = np.searchsorted(sorted_labels, np.arange(n_clusters), side="right")
    for c in range(n_clusters):
        members = order[starts[c] : ends[c]]
        if members.size == 0:
            raise ValueError(f"cluster {c} has no members (labels must be 0..k-1)")
        block = data[members]
        scores = block @ block.sum(axis=0, dtype=np.float64).astype(data.dtype)
        medoids[c] = members[int(np.argmax(scores))]
    return medoids
