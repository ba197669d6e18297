"""Core distances, the two the ``hdbscan`` package uses, kept with every result.

- **fit** (``core``): the distance to the ``min_samples``-th nearest *other*
  point -- what the mutual reachability of the clustering is built from
  (hdbscan's Borůvka/Prim trees query ``min_samples + 1`` neighbours, the
  point itself first).
- **prediction** (``prediction``): the distance to the ``min_samples``-th
  nearest point *counting the point itself* -- what hdbscan's
  ``PredictionData`` computes (``tree.query(data, k=min_samples)``) and
  ``approximate_predict`` compares a new point against. One neighbour fewer.

Both are exact: from the certified neighbour lists of :mod:`.neighbours`
(every point within the fit core distance is in a row's list, so the
smaller prediction distance is read from the same list).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cluster_workers.engines.duplicates import distinct_rows
from cluster_workers.engines.neighbours import NeighbourGraph, nearest, weighted_core


@dataclass(frozen=True)
class CoreDistances:
    """Per row, both core distances (float64)."""

    core: np.ndarray  # (n,) min_samples-th other point
    prediction: np.ndarray  # (n,) min_samples-th point, itself counted


def prediction_cores(graph: NeighbourGraph, weights: np.ndarray, min_samples: int) -> np.ndarray:
    """The prediction core distance of every row of a certified graph (weights: copies per row)."""
    return weighted_core(graph.dist, np.asarray(weights, dtype=np.int64)[graph.ids], min_samples - 1)


def core_distances(data: np.ndarray, min_samples: int) -> CoreDistances:
    """Both core distances of the rows of ``data`` (L2-normalised), exact: copies collapsed, certified lists."""
    x = np.ascontiguousarray(data, dtype=np.float32)
    first, inverse, counts = distinct_rows(x)
    if first.size == 1:
        zeros = np.zeros(x.shape[0])
        return CoreDistances(zeros, zeros.copy())
    graph = nearest(np.ascontiguousarray(x[first]), min_samples, min_samples + 1, weights=counts)
    return CoreDistances(graph.core[inverse], prediction_cores(graph, counts, min_samples)[inverse])
