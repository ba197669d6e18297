"""Top-``m`` heaps fed from blocks of inner products (numba kernels of the neighbour screen).

A row's heap is a min-heap of its ``m`` largest inner products seen so far;
its root is the row's threshold. Most values of a block never beat it, so the
kernels test ``CHUNK`` values at once with a SIMD reduction and look one by one
only at chunks that could. The same reductions give, for free, each row's
largest inner product with every group of consecutive columns (*group maxima*).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

CHUNK = 64  # values tested at once against a row's threshold
COLUMN_TILE = 16  # columns one thread serves at once in the transposed direction (one cache line)


@njit(cache=True, nogil=True)
def _sift_down(vals: np.ndarray, ids: np.ndarray, pos: int) -> None:
    """Restore the min-heap property of ``vals`` (ids move along) from ``pos`` down."""
    size = vals.shape[0]
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and vals[right] < vals[left]:
            child = right
        if vals[child] >= vals[pos]:
            return
        vals[pos], vals[child] = vals[child], vals[pos]
        ids[pos], ids[child] = ids[child], ids[pos]
        pos = child


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _span_max(sims: np.ndarray, i: int, start: int, stop: int) -> float:
    """``max(sims[i, start:stop])`` as a SIMD reduction."""
    top = sims[i, start]
    for j in range(start + 1, stop):
        top = max(top, sims[i, j])
    return top


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _push_block(
    sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray,
    maxima: np.ndarray, group: int,
) -> None:  # fmt: skip
    """Offer ``sims[i, j]`` (row ``rows[i]``, candidate ``cols[j]``) to each row's top-m min-heap.

    Chunks of ``CHUNK`` values are skipped at once when their maximum (a SIMD
    reduction) does not beat the row's current threshold, as most do once the
    heap is full; only the rest are looked at one by one. With ``group`` (a
    power of two; ``cols`` consecutive from a multiple of it), the chunk
    maxima also go into ``maxima[rows[i], cols[j] // group]``.
    """
    n_cols = sims.shape[1]
    width = min(CHUNK, group) if group else CHUNK
    for i in prange(sims.shape[0]):
        r = rows[i]
        vals = heap_vals[r]
        ids = heap_ids[r]
        threshold = vals[0]
        for start in range(0, n_cols, width):
            stop = min(n_cols, start + width)
            top = _span_max(sims, i, start, stop)
            if group:
                g = cols[start] // group
                if start % group == 0 or top > maxima[r, g]:
                    maxima[r, g] = top
            if top <= threshold:
                continue
            for j in range(start, stop):
                s = sims[i, j]
                if s > threshold:
                    vals[0] = s
                    ids[0] = cols[j]
                    _sift_down(vals, ids, 0)
                    threshold = vals[0]


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _max_excess(sims: np.ndarray, i: int, start: int, stop: int, thresholds: np.ndarray) -> float:
    """``max(sims[i, start:stop] - thresholds)`` as a SIMD reduction: positive when any value beats its threshold."""
    top = sims[i, start] - thresholds[0]
    for j in range(start + 1, stop):
        top = max(top, sims[i, j] - thresholds[j - start])
    return top


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _push_block_columns(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray) -> None:
    """Offer ``sims[i, j]`` to the heap of ``cols[j]`` (candidate ``rows[i]``): the transposed direction, no copy.

    Tiles of ``COLUMN_TILE`` columns are independent (each owns its heaps);
    inside a tile the rows are read in order, and a row is skipped at once when
    no value beats its column's threshold (one SIMD reduction over the tile).
    """
    n_rows, n_cols = sims.shape
    n_tiles = (n_cols + COLUMN_TILE - 1) // COLUMN_TILE
    for t in prange(n_tiles):
        start = t * COLUMN_TILE
        stop = min(n_cols, start + COLUMN_TILE)
        thresholds = np.empty(stop - start, dtype=np.float32)
        for j in range(start, stop):
            thresholds[j - start] = heap_vals[cols[j], 0]
        for i in range(n_rows):
            if _max_excess(sims, i, start, stop, thresholds) <= 0:
                continue
            for j in range(start, stop):
                s = sims[i, j]
                if s > thresholds[j - start]:
                    c = cols[j]
                    heap_vals[c, 0] = s
                    heap_ids[c, 0] = rows[i]
                    _sift_down(heap_vals[c], heap_ids[c], 0)
                    thresholds[j - start] = heap_vals[c, 0]


def _column_maxima(sims: np.ndarray, row0: int, cols: np.ndarray, group: int, out: np.ndarray) -> None:
    """``out[cols[j], g]``: the largest of ``sims[:, j]`` over the rows of group ``g`` (rows ``row0 ...``, a multiple of ``group``)."""
    n_rows, n_cols = sims.shape
    full = n_rows - n_rows % group
    g0 = row0 // group
    target = slice(cols[0], cols[0] + n_cols) if cols[-1] - cols[0] == n_cols - 1 else cols  # a view when consecutive
    out[target, g0 : g0 + full // group] = sims[:full].reshape(-1, group, n_cols).max(axis=1).T
    if full < n_rows:
        out[target, g0 + full // group] = sims[full:].max(axis=0)


@dataclass
class GroupMaxima:
    """Each row's largest inner product with every group of ``size`` consecutive rows (rows in cell order).

    ``values[a, g]`` is that maximum (float32 GEMM) where ``exact[a // size, g]``;
    elsewhere the screen skipped the pair of groups and it is an upper bound
    (:mod:`.caps`). Both uses in the MST (skipping groups, bounding slots) read
    it accordingly.
    """

    values: np.ndarray  # n x groups, float32
    size: int
    exact: np.ndarray  # groups x groups, bool

    @classmethod
    def empty(cls, n: int, size: int) -> "GroupMaxima":
        groups = -(-n // size)
        return cls(np.full((n, groups), -np.inf, dtype=np.float32), size, np.zeros((groups, groups), dtype=np.bool_))
