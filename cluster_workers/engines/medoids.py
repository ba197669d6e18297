"""One medoid per cluster, the application's rule by default.

``weighted`` (default) is scikit-learn's ``HDBSCAN(store_centers="medoid")``:
the member ``i`` minimising ``sum_j d(i, j) * p_j`` over the cluster's members
``j``, with ``p`` HDBSCAN's membership probabilities, euclidean distances
computed as scikit-learn does (float64, ``|x|² + |y|² - 2 x·y``), the first
member in row order on ties. It is computed in row blocks, never a full pairwise
matrix: a float32 GEMM screen (tiles on and above the diagonal only, each
serving its rows and columns) gives every member's sum with a proven error bound
(the float32 inner-product error is at most ``d * 2**-24 / (1 - d * 2**-24) *
|x| |y|``), and only the members whose lower bound does not exceed the best
upper bound are scored exactly, in float64. Exact up to ``EXACT_LIMIT``
members. Above it, the sums are estimated against a seeded sample of
``SAMPLE_COLUMNS`` members and the ``CANDIDATES`` best estimates are scored
exactly (documented in docs/engines.md).

``mean`` is the earlier rule: the member nearest the cluster's mean direction
(least summed *squared* distance), linear time.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

EXACT_LIMIT = 60_000
SAMPLE_COLUMNS = 20_000
CANDIDATES = 64
BLOCK_BYTES = 128 * 2**20
TILE = 2048  # rows of one symmetric tile of the float32 screen


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


@njit(cache=True, nogil=True, inline="always")
def _distance_interval(d2: float, e: float) -> tuple[float, float]:
    """``sqrt(d2 -/+ e)``, floored at 0: the distance whose screened square ``d2`` is off by at most ``e``."""
    return (np.sqrt(d2 - e) if d2 > e else 0.0), (np.sqrt(d2 + e) if d2 + e > 0.0 else 0.0)


@njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sums(  # type: ignore[no-untyped-def]
    g, sq_r, sq_c, rows, cols, weights, slack_r, slack_c, low, high
) -> None:
    """``low[i]``/``high[i]``: ``sum_j sqrt(sq_r[i] + sq_c[j] - 2 g[i, j] -/+ e_ij) * weights[j]``.

    ``e_ij = slack_r[i] * slack_c[j]`` bounds the error of ``2 g[i, j]``; a point's distance to itself is 0.
    """
    for i in prange(g.shape[0]):
        lo = 0.0
        hi = 0.0
        for j in range(g.shape[1]):
            d_lo, d_hi = _distance_interval(sq_r[i] + sq_c[j] - 2.0 * np.float64(g[i, j]), slack_r[i] * slack_c[j])
            if rows[i] == cols[j]:
                d_lo = 0.0
                d_hi = 0.0
            lo += d_lo * weights[j]
            hi += d_hi * weights[j]
        low[i] = lo
        high[i] = hi


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _sums_both_ways(  # type: ignore[no-untyped-def]
    g, sq_r, sq_c, weights_r, weights_c, slack_r, slack_c, low_r, high_r, low_c, high_c
) -> None:
    """:func:`_sums` for an off-diagonal tile of a symmetric matrix: each distance serves its row and its column."""
    for i in range(g.shape[0]):
        lo = 0.0
        hi = 0.0
        for j in range(g.shape[1]):
            d_lo, d_hi = _distance_interval(sq_r[i] + sq_c[j] - 2.0 * np.float64(g[i, j]), slack_r[i] * slack_c[j])
            lo += d_lo * weights_c[j]
            hi += d_hi * weights_c[j]
            low_c[j] += d_lo * weights_r[i]
            high_c[j] += d_hi * weights_r[i]
        low_r[i] += lo
        high_r[i] += hi


def _screened_member_sums(x: np.ndarray, members: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of every member's weighted distance sum within ``members``, from float32 GEMM tiles.

    The matrix is symmetric: only tiles on and above the diagonal are computed,
    each off-diagonal one serving its rows and its columns (half the GEMM work
    of row blocks over the full matrix).
    """
    xm = np.asarray(x[members], dtype=np.float32)
    sq = np.einsum("ij,ij->i", xm, xm, dtype=np.float64)
    norms = np.sqrt(sq)
    unit = xm.shape[1] * 2.0**-24
    slack = 2.0 * unit / (1.0 - unit) * norms  # e_ij = slack[i] * norms[j] bounds the error of 2 x_i.x_j
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    low = np.zeros(members.size)
    high = np.zeros(members.size)
    for a in range(0, members.size, TILE):
        ra = slice(a, a + TILE)
        xa = xm[ra]
        lo, hi = np.empty(xa.shape[0]), np.empty(xa.shape[0])
        _sums(xa @ xa.T, sq[ra], sq[ra], members[ra], members[ra], weights[ra], slack[ra], norms[ra], lo, hi)
        low[ra] += lo
        high[ra] += hi
        for b in range(a + TILE, members.size, TILE):
            rb = slice(b, b + TILE)
            g = xa @ xm[rb].T
            _sums_both_ways(
                g, sq[ra], sq[rb], weights[ra], weights[rb], slack[ra], norms[rb], low[ra], high[ra], low[rb], high[rb]
            )
    return low, high


def weighted_distance_sums(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``sum_j ||x[rows[i]] - x[cols[j]]|| * weights[j]`` for each ``i``: float64 GEMM in row blocks, scikit-learn's arithmetic."""
    xc = np.asarray(x[cols], dtype=np.float64)
    sq_c = np.einsum("ij,ij->i", xc, xc)
    no_slack = np.zeros(max(rows.size, cols.size))
    sums = np.empty(rows.size, dtype=np.float64)
    upper = np.empty(rows.size, dtype=np.float64)  # equal to the sums: no error term in float64
    step = max(1, BLOCK_BYTES // (8 * max(1, cols.size)))
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    for s in range(0, rows.size, step):
        r = rows[s : s + step]
        xr = np.asarray(x[r], dtype=np.float64)
        sq_r = np.einsum("ij,ij->i", xr, xr)
        _sums(
            xr @ xc.T,
            sq_r,
            sq_c,
            r,
            cols,
            weights,
            no_slack[: r.size],
            no_slack[: cols.size],
            sums[s : s + step],
            upper[s : s + step],
        )
    return sums


def _exact_medoid(x: np.ndarray, members: np.ndarray, weights: np.ndarray) -> int:
    """The member with the least weighted distance sum: float32 screen, exact float64 sums for the contenders."""
    low, high = _screened_member_sums(x, members, weights)
    contenders = np.flatnonzero(low <= high.min())  # in row order: argmin keeps the first on ties
    return int(members[contenders[np.argmin(weighted_distance_sums(x, members[contenders], members, weights))]])


def _weighted_medoid(x: np.ndarray, members: np.ndarray, probabilities: np.ndarray, rng: np.random.Generator) -> tuple[int, bool]:
    weights = probabilities[members].astype(np.float64)
    if members.size <= EXACT_LIMIT:
        return _exact_medoid(x, members, weights), False
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
    medoids = np.empty(len(members), dtype=np.int64)
    approximate = 0
    for c, m in enumerate(members):
        if rule == "weighted":
            rng = np.random.default_rng([seed, m.size])  # one cluster's sample depends on it alone (a re-cut keeps it)
            medoids[c], approx = _weighted_medoid(data, m, probabilities, rng)
            approximate += approx
        else:
            medoids[c] = _mean_medoid(data, m)
    return medoids, {"rule": rule, "exact_limit": EXACT_LIMIT, "approximate_clusters": approximate}
