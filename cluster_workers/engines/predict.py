"""New points joined to a frozen clustering by HDBSCAN's own rule (the ``hdbscan`` package's ``approximate_predict``).

For a new point ``x`` and the clustered sample (its condensed tree, labels and
prediction core distances, :mod:`.cores`):

1. its ``2 * min_samples`` nearest sample points, exact (:func:`.query.nearest_in`);
2. its core distance: the distance to the ``min_samples + 1``-th of them (the
   package reads ``neighbor_distances[min_samples]``);
3. among those neighbours the nearest in mutual reachability
   ``max(core(s), core(x), d(x, s))`` (the first of equal ones, nearest first),
   and ``lambda = 1 / that distance``;
4. that point's parent in the condensed tree; when the point left it at a
   larger lambda than ``x`` reaches, up the tree while a cluster was born at or
   after ``lambda``;
5. the cluster it lands in is a selected cluster or one below it: that
   cluster's label, probability ``min(lambda, max_lambda) / max_lambda``
   (``max_lambda``: the largest lambda among the selected cluster's own rows);
   otherwise an outlier, probability 0.

The selected clusters are found from the labels as the package finds them
(per label, the smallest condensed-tree parent among its points). Everything is
vectorised over the new points; the package loops in Python per point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cluster_workers.engines.neighbours import ScreenTuning
from cluster_workers.engines.query import SampleIndex, nearest_in, sample_index

DOUBLE_MAX = np.finfo(np.double).max


@dataclass(frozen=True)
class PredictionTree:
    """What prediction needs of a clustered sample's condensed tree, as arrays (cluster ids are ``>= n``)."""

    n: int  # sample points
    point_parent: np.ndarray  # (n,) the cluster each point leaves
    point_lambda: np.ndarray  # (n,) the lambda at which it leaves
    cluster_parent: np.ndarray  # (clusters,) by id - n; -1 for the root
    cluster_lambda: np.ndarray  # (clusters,) lambda at which each cluster was born
    label: np.ndarray  # (clusters,) the label a point landing in it gets (-1: none)
    max_lambda: np.ndarray  # (clusters,) its selected cluster's largest lambda (0 where no label)
    root: int


def prediction_tree(condensed: np.ndarray, labels: np.ndarray) -> PredictionTree:
    """The arrays of :class:`PredictionTree` from hdbscan's raw condensed tree and the sample's labels."""
    n = int(labels.size)
    points = condensed[condensed["child_size"] == 1]
    point_parent = np.zeros(n, dtype=np.int64)
    point_lambda = np.zeros(n)
    point_parent[points["child"]] = points["parent"]
    point_lambda[points["child"]] = points["lambda_val"]
    clusters = condensed[condensed["child_size"] > 1]
    size = int(condensed["parent"].max()) - n + 1 if condensed.size else 1
    if clusters.size:
        size = max(size, int(clusters["child"].max()) - n + 1)
    cluster_parent = np.full(size, -1, dtype=np.int64)
    cluster_lambda = np.zeros(size)
    cluster_parent[clusters["child"] - n] = clusters["parent"]
    cluster_lambda[clusters["child"] - n] = clusters["lambda_val"]
    root = int(clusters["parent"].min()) if clusters.size else n
    label = np.full(size, -1, dtype=np.int64)
    max_lambda = np.zeros(size)
    group_max = np.zeros(size)
    np.maximum.at(group_max, condensed["parent"] - n, condensed["lambda_val"])
    for number, cluster in enumerate(selected_clusters(point_parent, labels)):
        below = [cluster]
        frontier = [cluster]
        while frontier:  # every cluster below the selected one, as the package's _clusters_below
            frontier = clusters["child"][np.isin(clusters["parent"], frontier)].tolist()
            below += frontier
        label[np.asarray(below) - n] = number
        max_lambda[np.asarray(below) - n] = group_max[cluster - n]
    return PredictionTree(n, point_parent, point_lambda, cluster_parent, cluster_lambda, label, max_lambda, root)


def selected_clusters(point_parent: np.ndarray, labels: np.ndarray) -> list[int]:
    """The selected clusters, sorted: per label the smallest parent among its points (the package's rule)."""
    found = [int(point_parent[labels == label].min()) for label in range(int(labels.max()) + 1)] if labels.size else []
    return sorted(found)


@dataclass
class Prediction:
    """Per new point: its label (-1 outlier), probability, nearest sample point in mutual reachability, and how."""

    labels: np.ndarray  # (q,) int64, the sample's label numbers
    probabilities: np.ndarray  # (q,) float64
    nearest: np.ndarray  # (q,) int64 sample row (-1 when the sample has no clusters)
    core_distances: np.ndarray  # (q,) float64: the new point's core distance (step 2)
    ties: int  # points whose nearest in mutual reachability was tied with a point of another outcome
    recomputed: int  # points whose neighbours the screen could not prove (measured again)
    read_share: float  # share of (point, sample row) pairs screened; the rest ruled out by group bounds


def approximate_predict(
    queries: np.ndarray,
    sample: np.ndarray | SampleIndex,
    prediction_cores: np.ndarray,
    tree: PredictionTree,
    min_samples: int,
    on_block: Callable[[], object] | None = None,
    tuning: ScreenTuning = ScreenTuning(),
    prune: bool = True,
) -> Prediction:
    """Labels and probabilities of ``queries`` against the clustered ``sample`` (both L2-normalised float32; an
    index of the sample, :func:`.query.sample_index`, when it is queried again and again)."""
    q = queries.shape[0]
    if not np.any(tree.cluster_parent >= 0):  # no cluster in the condensed tree: the package calls every new point noise
        none = np.full(q, -1, dtype=np.int64)
        return Prediction(none, np.zeros(q), none.copy(), np.full(q, np.nan), 0, 0, 0.0)
    index = sample if isinstance(sample, SampleIndex) else sample_index(sample)
    ids, dist, stats = nearest_in(queries, index, 2 * min_samples, on_block, tuning, prune)
    own_core = dist[:, min(min_samples, dist.shape[1] - 1)]
    reach = np.maximum(np.maximum(prediction_cores[ids], own_core[:, None]), dist)
    pick = np.argmin(reach, axis=1)
    rows = np.arange(q)
    nearest = ids[rows, pick]
    best = reach[rows, pick]
    lam = np.full(q, DOUBLE_MAX)
    np.divide(1.0, best, out=lam, where=best > 0.0)
    ties = _outcome_ties(reach, dist, pick, ids, tree)
    landed = _climb(tree.point_parent[nearest], tree.point_lambda[nearest] > lam, lam, tree)
    labels = tree.label[landed - tree.n]
    top = tree.max_lambda[landed - tree.n]
    probabilities = np.where(labels < 0, 0.0, np.where(top > 0.0, np.minimum(top, lam) / np.where(top > 0.0, top, 1.0), 1.0))
    return Prediction(labels, probabilities, nearest, own_core, ties, stats["recomputed"], stats["read_share"])


def _climb(cluster: np.ndarray, walk: np.ndarray, lam: np.ndarray, tree: PredictionTree) -> np.ndarray:
    """Step 4 for every point at once: up from ``cluster`` while the cluster was born at or after ``lam``."""
    cluster = cluster.copy()
    active = np.flatnonzero(walk)
    while active.size:
        c = cluster[active] - tree.n
        up = (cluster[active] > tree.root) & (tree.cluster_parent[c] >= 0) & (tree.cluster_lambda[c] >= lam[active])
        active = active[up]
        cluster[active] = tree.cluster_parent[cluster[active] - tree.n]
    return cluster


def _outcome_ties(reach: np.ndarray, dist: np.ndarray, pick: np.ndarray, ids: np.ndarray, tree: PredictionTree) -> int:
    """Points whose pick the neighbour order decided: another neighbour at the same mutual reachability *and the
    same distance* sits elsewhere in the tree (neighbours are ordered by distance in both implementations;
    equal distances in row order here, in the package's KD-tree order there)."""
    rows = np.arange(reach.shape[0])
    best, near = reach[rows, pick], dist[rows, pick]
    tied = (reach == best[:, None]) & (dist == near[:, None])
    count = 0
    for r in np.flatnonzero(tied.sum(axis=1) > 1):
        cand = ids[r, tied[r]]
        count += len({(int(tree.point_parent[c]), float(tree.point_lambda[c])) for c in cand}) > 1
    return count
