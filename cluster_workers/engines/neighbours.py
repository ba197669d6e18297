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
from numba import get_num_threads, njit, prange

BLOCK_ROWS = 2048  # rows of one similarity block
BLOCK_COLS = 8192  # its columns: 2048 x 8192 float32 = 64 MiB
MARGIN = 8  # extra screened candidates, reranked exactly
CHUNK = 64  # values tested at once against a row's threshold
COLUMN_TILE = 16  # columns tested at once against their thresholds in the transposed direction (one cache line)
BAND = 32  # rows whose column maxima are taken together in the transposed direction
LANES = 16  # running maxima side by side in a row's chunk maximum (one AVX-512 register of float32)


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
def _span_max(span: np.ndarray, lanes: np.ndarray) -> float:
    """``max(span)``: ``LANES`` running maxima side by side (SIMD), then one short reduction.

    (A plain running ``max`` does not vectorise, nor does indexing that the
    compiler cannot prove non-negative: either costs 2-4x.) ``lanes`` is
    scratch of ``LANES`` values.
    """
    size = span.shape[0]
    if size % LANES:
        top = span[0]
        for j in range(1, size):
            top = max(top, span[j])
        return top
    for lane in range(LANES):
        lanes[lane] = span[lane]
    for base in range(LANES, size, LANES):
        for lane in range(LANES):
            lanes[lane] = max(lanes[lane], span[base + lane])
    top = lanes[0]
    for lane in range(1, LANES):
        top = max(top, lanes[lane])
    return top


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _push_block(
    sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray,
    maxima: np.ndarray, group: int,
) -> None:  # fmt: skip
    """Offer ``sims[i, j]`` (row ``rows[i]``, candidate ``cols[j]``) to each row's top-m min-heap.

    Chunks of ``CHUNK`` values are skipped at once when their maximum (see
    :func:`_span_max`) does not beat the row's current threshold, as most do once the
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
        lanes = np.empty(LANES, dtype=sims.dtype)
        for start in range(0, n_cols, width):
            stop = min(n_cols, start + width)
            top = _span_max(sims[i, start:stop], lanes)
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


@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _push_block_columns(
    sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray,
    maxima: np.ndarray, group: int, n_stripes: int,
) -> None:  # fmt: skip
    """Offer ``sims[i, j]`` to the heap of ``cols[j]`` (candidate ``rows[i]``): the transposed direction, no copy.

    Each of ``n_stripes`` threads owns a stripe of columns (and their heaps)
    and streams the block through it in bands of ``BAND`` rows, in the order
    it lies in memory: the band's column maxima (element-wise, SIMD) are
    compared with the columns' thresholds, and only a tile of ``COLUMN_TILE``
    columns with a maximum above its threshold is looked at value by value.
    With ``group`` (a power of two; ``rows`` consecutive from a multiple of
    it; bands shrink to it when smaller), each column's largest value over every group of rows goes
    into ``maxima[cols[j], rows[i] // group]`` on the way.
    """
    n_rows, n_cols = sims.shape
    tiles = (n_cols + COLUMN_TILE - 1) // COLUMN_TILE
    n_stripes = max(1, min(n_stripes, tiles))
    width = -(-tiles // n_stripes) * COLUMN_TILE
    band = min(BAND, group) if group else BAND
    for s in prange(n_stripes):
        first = s * width
        w = min(n_cols, first + width) - first
        if w <= 0:
            continue
        ids = cols[first : first + w]
        thresholds = np.empty(w, dtype=np.float32)
        band_max = np.empty(w, dtype=np.float32)
        group_max = np.full(w, -np.inf, dtype=np.float32)
        for q in range(w):
            thresholds[q] = heap_vals[ids[q], 0]
        for top in range(0, n_rows, band):
            bottom = min(n_rows, top + band)
            row = sims[top, first : first + w]
            for q in range(w):
                band_max[q] = row[q]
            for i in range(top + 1, bottom):
                row = sims[i, first : first + w]
                for q in range(w):
                    band_max[q] = max(band_max[q], row[q])
            if group:
                for q in range(w):
                    group_max[q] = max(group_max[q], band_max[q])
                if bottom == n_rows or (rows[bottom - 1] + 1) % group == 0:
                    g = rows[bottom - 1] // group
                    for q in range(w):
                        maxima[ids[q], g] = group_max[q]
                        group_max[q] = -np.inf
            for start in range(0, w, COLUMN_TILE):
                stop = min(w, start + COLUMN_TILE)
                above = 0
                for q in range(start, stop):
                    above += band_max[q] > thresholds[q]
                if above == 0:
                    continue
                for i in range(top, bottom):
                    row = sims[i, first : first + w]
                    for q in range(start, stop):
                        v = row[q]
                        if v > thresholds[q]:
                            c = ids[q]
                            heap_vals[c, 0] = v
                            heap_ids[c, 0] = rows[i]
                            _sift_down(heap_vals[c], heap_ids[c], 0)
                            thresholds[q] = heap_vals[c, 0]


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
    x: np.ndarray, m: int, on_block: Callable[[], object] | None = None, maxima: np.ndarray | None = None, group: int = 0
) -> np.ndarray:
    """Ids of each row's ``m`` largest inner products (itself included), unordered, by symmetric float32 GEMM.

    First every row chunk ``I`` meets itself (one square block): with rows in
    cell order (:mod:`.order`) that fills each heap with near candidates, so
    its threshold is high from the start and the rest push little (3x less
    work in the transposed direction on 110,000 real-like rows). Then ``I``
    meets every later row in ``BLOCK_COLS``-wide blocks, each serving both its
    rows and its columns: the upper triangle of ``X @ X.T`` in wide GEMMs
    (narrow ones run slower at 384-d). The order of the offers changes no result.
    With ``maxima`` (``n × ceil(n / group)`` float32), the same blocks also fill
    each row's largest inner product with every group of ``group`` consecutive rows.
    """
    n, block_rows, block_cols = x.shape[0], BLOCK_ROWS, BLOCK_COLS
    heap_vals = np.full((n, m), -np.inf, dtype=np.float32)
    heap_ids = np.zeros((n, m), dtype=np.int64)
    record = maxima is not None
    if not record:
        maxima, group = np.empty((1, 1), dtype=np.float32), 0
    for a in range(0, n, block_rows):
        if on_block is not None:
            on_block()
        xa = x[a : a + block_rows]  # a view, not a copy
        rows = np.arange(a, a + xa.shape[0])
        _push_block(xa @ xa.T, rows, rows, heap_vals, heap_ids, maxima, group)
    for a in range(0, n, block_rows):
        rows = np.arange(a, min(n, a + block_rows))
        xa = x[a : a + block_rows]
        for b in range(rows[-1] + 1, n, block_cols):
            if on_block is not None:
                on_block()
            cols = np.arange(b, min(n, b + block_cols))
            sims = xa @ x[b : b + block_cols].T
            _push_block(sims, rows, cols, heap_vals, heap_ids, maxima, group)
            _push_block_columns(sims, rows, cols, heap_vals, heap_ids, maxima, group, get_num_threads())
    return heap_ids


def knn(
    data: np.ndarray,
    k: int,
    margin: int = MARGIN,
    on_block: Callable[[], object] | None = None,
    maxima: np.ndarray | None = None,
    group: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)`` of each row's ``k`` nearest rows (itself included), sorted, float64 distances.

    Exact: every pair is screened, the best ``k + margin`` per row are reranked
    in float64. ``maxima``/``group``: see :func:`screen` (filled on the way).
    """
    x = np.ascontiguousarray(data, dtype=np.float32)
    n = x.shape[0]
    k = min(k, n)
    m = min(n, k + margin)
    candidates = screen(x, m, on_block=on_block, maxima=maxima, group=group)
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
