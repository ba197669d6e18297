"""A row order that puts near rows next to each other (cells of a seeded spherical k-means).

No distance, core distance or MST weight depends on the order. Which of
several *equally heavy* edges the MST takes can (ties are broken by row
index, as in the ``hdbscan`` package, whose own answer moves with row order
there): a few points on a tie may fall on either side, never more than
hdbscan's own answer moves when its rows are shuffled. The order makes groups
of consecutive rows compact, so that one group's largest inner product with
a point (kept by the neighbour screen) bounds the point's distance to the
group tightly -- see :mod:`.mst`.
"""

from __future__ import annotations

import numpy as np

CELLS = 256  # k-means cells (at most n // 64)
SAMPLE = 30_000  # rows the centroids are fitted on
ROUNDS = 5  # Lloyd rounds


def cell_order(x: np.ndarray, rows: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A permutation of ``rows`` (default: all rows of ``x``, unit vectors, float32) that lists each k-means cell's
    rows together; positions into ``rows``. The rows are read in chunks, never copied whole."""
    return np.argsort(cell_labels(x, rows, seed=seed), kind="stable")


def cell_labels(x: np.ndarray, rows: np.ndarray | None = None, cells: int | None = None, seed: int = 0) -> np.ndarray:
    """Each row's k-means cell (``cells``: default ``CELLS``, at most one per 64 rows), by seeded spherical k-means."""
    rows = np.arange(x.shape[0]) if rows is None else rows
    n = rows.size
    cells = max(1, min(CELLS if cells is None else cells, n // 64))
    rng = np.random.default_rng(seed)
    fit = x[rows[np.sort(rng.choice(n, min(n, max(SAMPLE, 30 * cells)), replace=False))]]
    centroids = fit[rng.choice(fit.shape[0], cells, replace=False)].copy()
    for _ in range(ROUNDS):
        nearest = np.argmax(fit @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, fit)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        filled = norms[:, 0] > 0
        centroids[filled] = sums[filled] / norms[filled]
    cell = np.empty(n, dtype=np.int64)
    for s in range(0, n, 16_384):
        cell[s : s + 16_384] = np.argmax(x[rows[s : s + 16_384]] @ centroids.T, axis=1)
    return cell
