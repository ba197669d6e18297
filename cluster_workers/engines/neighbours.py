"""Exact k nearest neighbours of unit vectors, with distances in float64.

One path, exact by construction (no silent switch to an approximate search):

1. **Screen** with float32 GEMM over symmetric blocks (block ``(I, J)`` serves the
   rows of ``I`` and, transposed, the rows of ``J``: half the arithmetic of a
   plain ``X @ X.T``), keeping each row's ``k + margin`` largest inner products
   in a bounded heap (numba; no ``argpartition`` over ``n``-wide rows).
2. **Rerank** the kept candidates with the distance recomputed in float64 as
   ``sqrt(sum((x - y)**2))`` -- the way the ``hdbscan`` package computes it --
   and keep the ``k`` nearest, sorted.

float32 screening can misorder candidates whose squared distances differ by
less than about 1e-5; the ``margin`` extra candidates (reranked exactly) absorb
that, so the ``k`` returned neighbours and their distances are the float64
ones. Memory: one ``BLOCK_ROWS × BLOCK_COLS`` float32 block plus ``n × (k + margin)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit, prange

from cluster_workers.engines.heaps import CHUNK, GroupMaxima, _column_maxima, _push_block, _push_block_columns
from cluster_workers.engines.pruned import screen_by_caps

BLOCK_ROWS = 2048  # rows of one similarity block
BLOCK_COLS = 8192  # its columns: 2048 x 8192 float32 = 64 MiB
MARGIN = 8  # extra screened candidates, reranked exactly


def group_size(n: int, budget: int) -> int:
    """The smallest group (a power of two, 64 to ``BLOCK_ROWS``) whose ``n × groups`` float32 maxima fit ``budget`` bytes; 0 if none."""
    group = CHUNK
    while group <= BLOCK_ROWS:
        if n * (-(-n // group)) * 4 <= budget:
            return group
        group *= 2
    return 0


# reassociation lets the float64 sum run in SIMD lanes (4x here); it moves a distance by at most a few ulps
@njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
def exact_distances(x: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``out[i, j] = ||x[rows[i]] - x[ids[i, j]]||`` in float64 (direct differences, no cancellation)."""
    out = np.empty(ids.shape, dtype=np.float64)
    d = x.shape[1]
    for i in prange(ids.shape[0]):
        a = rows[i]
        for j in range(ids.shape[1]):
            b = ids[i, j]
            acc = 0.0
            for t in range(d):
                diff = np.float64(x[a, t]) - np.float64(x[b, t])
                acc += diff * diff
            out[i, j] = np.sqrt(acc)
    return out


def screen(
    x: np.ndarray, m: int, on_block: Callable[[], object] | None = None, maxima: GroupMaxima | None = None
) -> np.ndarray:
    """Ids of each row's ``m`` largest inner products (itself included), unordered, by symmetric float32 GEMM.

    Row chunk ``I`` meets itself (one square block) and then every later row in
    ``BLOCK_COLS``-wide blocks, each serving both its rows and its columns: the
    upper triangle of ``X @ X.T`` in wide GEMMs (narrow ones run slower at 384-d).
    With ``maxima``, the same blocks fill every group maximum (all exact).
    """
    n, block_rows, block_cols = x.shape[0], BLOCK_ROWS, BLOCK_COLS
    heap_vals = np.full((n, m), -np.inf, dtype=np.float32)
    heap_ids = np.zeros((n, m), dtype=np.int64)
    values, group = (maxima.values, maxima.size) if maxima is not None else (np.empty((1, 1), dtype=np.float32), 0)
    if maxima is not None:
        block_rows = max(group, block_rows - block_rows % group)  # row chunks of whole groups
    for a in range(0, n, block_rows):
        rows = np.arange(a, min(n, a + block_rows))
        xa = x[a : a + block_rows]  # views, not copies
        if on_block is not None:
            on_block()
        _push_block(xa @ xa.T, rows, rows, heap_vals, heap_ids, values, group)
        for b in range(rows[-1] + 1, n, block_cols):
            if on_block is not None:
                on_block()
            cols = np.arange(b, min(n, b + block_cols))
            sims = xa @ x[b : b + block_cols].T
            _push_block(sims, rows, cols, heap_vals, heap_ids, values, group)
            _push_block_columns(sims, rows, cols, heap_vals, heap_ids)
            if group:
                _column_maxima(sims, a, cols, group, values)
    if maxima is not None:
        maxima.exact[:] = True
    return heap_ids


def knn(
    data: np.ndarray,
    k: int,
    margin: int = MARGIN,
    on_block: Callable[[], object] | None = None,
    maxima: GroupMaxima | None = None,
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)`` of each row's ``k`` nearest rows (itself included), sorted, float64 distances.

    Exact: every pair is screened (or proven unable to matter), the best ``k +
    margin`` per row are reranked in float64. With ``maxima`` (rows in cell
    order) the screen is pruned by group caps and fills the group maxima
    (:mod:`.pruned`); else every pair is computed (:func:`screen`).
    ``stats["screened_pair_share"]``: the share of pairs computed.
    """
    x = np.ascontiguousarray(data, dtype=np.float32)
    n = x.shape[0]
    k = min(k, n)
    m = min(n, k + margin)
    if maxima is not None:
        candidates, share = screen_by_caps(x, m, maxima, on_block=on_block)
        if candidates is None:  # the caps would prune too little: every pair, in wide blocks
            candidates, share = screen(x, m, on_block=on_block, maxima=maxima), 1.0 + share
    else:
        candidates, share = screen(x, m, on_block=on_block), 1.0
    if stats is not None:
        stats["screened_pair_share"] = round(share, 4)
    dist = exact_distances(x, np.arange(n), candidates)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(dist, order, axis=1)


def core_distances(dist: np.ndarray, min_samples: int) -> np.ndarray:
    """Distance to the ``min_samples``-th neighbour, self excluded (``hdbscan``'s convention), float64."""
    return np.ascontiguousarray(dist[:, min(min_samples, dist.shape[1] - 1)], dtype=np.float64)


def brute_force_core_distances(data: np.ndarray, rows: np.ndarray, min_samples: int, margin: int = MARGIN) -> np.ndarray:
    """Core distances of ``rows`` against every row, independently of :func:`knn` (float64 GEMM, exact rerank)."""
    x = np.ascontiguousarray(data, dtype=np.float32)
    x64 = x.astype(np.float64)
    n = x.shape[0]
    m = min(n, min_samples + 1 + margin)
    out = np.empty(rows.size, dtype=np.float64)
    for s in range(0, rows.size, 128):
        q = rows[s : s + 128]
        cand = np.argpartition(x64[q] @ x64.T, n - m, axis=1)[:, n - m :]  # the m largest inner products
        dist = np.sort(exact_distances(x, q, cand), axis=1)
        out[s : s + 128] = dist[:, min(min_samples, m - 1)]
    return out
