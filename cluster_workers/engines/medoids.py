"""One medoid per cluster, the users' rule by default.

``weighted`` (default) is scikit-learn's ``HDBSCAN(store_centers="medoid")``:
the member ``i`` minimising ``sum_j d(i, j) * p_j`` over the cluster's members
``j``, with ``p`` HDBSCAN's membership probabilities, euclidean distances
computed as scikit-learn does (float64, ``|x|² + |y|² - 2 x·y``), the first
member in row order on ties. It is computed in row blocks of float64 GEMM, never
a full pairwise matrix; exact up to ``EXACT_LIMIT`` members. Above it, the sums
are estimated against a seeded sample of ``SAMPLE_COLUMNS`` members and the
``CANDIDATES`` best estimates are scored exactly (documented in docs/engines.md).

``mean`` is the earlier rule: the member nearest the cluster's mean direction
(least summed *squared* distance), linear time.
"""

from __future__ import annotations

import numpy as np

EXACT_LIMIT = 60_000
SAMPLE_COLUMNS = 20_000
CANDIDATES = 64
BLOCK_BYTES = 128 * 2**20


def _clusters(labels: np.ndarray) -> list[np.ndarray]:
    """Members of each cluster ``0..labels.max()``, in row order."""
    n_clusters = int(labels.max()) + 1 if labels.size else 0
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_clusters + 1))
    members = [order[bounds[c] : bounds[c + 1]] for c in range(n_clusters)]
    for c, m in enumerate(members):
        if m.size == 0:
            raise ValueError(f"cluster {c} has no members (labels must be 0..k-1)")
    return members


def weighted_distance_sums(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j ||x[rows[i]] - x[cols[j]]|| * weights[j]`` for each ``i`` (float64, blocked)."""
    xc = np.asarray(x[cols], dtype=np.float64)
    sq_c = np.einsum("ij,ij->i", xc, xc)
    out = np.empty(rows.size, dtype=np.float64)
    step = max(1, BLOCK_BYTES // (8 * max(1, cols.size)))
    for s in range(0, rows.size, step):
        xr = np.asarray(x[rows[s : s + step]], dtype=np.float64)
        d2 = np.einsum("ij,ij->i", xr, xr)[:, None] + sq_c[None, :] - 2.0 * (xr @ xc.T)
        np.maximum(d2, 0.0, out=d2)
        same = rows[s : s + step, None] == cols[None, :]
        d2[same] = 0.0  # a point's distance to itself is 0, as scikit-learn sets it
        out[s : s + step] = np.sqrt(d2) @ weights
    return out


def _weighted_medoid(x: np.ndarray, members: np.ndarray, probabilities: np.ndarray, rng: np.random.Generator) -> tuple[int, bool]:
    weights = probabilities[members].astype(np.float64)
    if members.size <= EXACT_LIMIT:
        return int(members[np.argmin(weighted_distance_sums(x, members, members, weights))]), False
    cols = np.sort(rng.choice(members.size, SAMPLE_COLUMNS, replace=False))
    estimate = weighted_distance_sums(x, members, members[cols], weights[cols])
    best = np.sort(np.argpartition(estimate, CANDIDATES)[:CANDIDATES])
    exact = weighted_distance_sums(x, members[best], members, weights)
    return int(members[best[np.argmin(exact)]]), True


def _mean_medoid(x: np.ndarray, members: np.ndarray) -> int:
    block = x[members]
    scores = block @ block.sum(axis=0, dtype=np.float64).astype(x.dtype)
    return int(members[int(np.argmax(scores))])


def medoid_indices(
    data: np.ndarray, labels: np.ndarray, probabilities: np.ndarray | None = None, rule: str = "weighted", seed: int = 0
) -> tuple[np.ndarray, dict]:
    """Row index of the medoid of each cluster ``0..labels.max()``, and how they were found."""
    members = _clusters(labels)
    if rule == "weighted" and probabilities is None:
        raise ValueError("the weighted medoid needs membership probabilities")
    rng = np.random.default_rng(seed)
    medoids = np.empty(len(members), dtype=np.int64)
    approximate = 0
    for c, m in enumerate(members):
        if rule == "weighted":
            medoids[c], approx = _weighted_medoid(data, m, probabilities, rng)
            approximate += approx
        else:
            medoids[c] = _mean_medoid(data, m)
    return medoids, {"rule": rule, "exact_limit": EXACT_LIMIT, "approximate_clusters": approximate}
