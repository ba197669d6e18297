"""The numba kernels of the exact engine: bounded heaps fed from GEMM blocks, exact float64 distances.

Shared by the neighbour screen (:mod:`.neighbours`) and the MST searches
(:mod:`.mst`). Every kernel is compiled once per signature with its own
options (``cache=True`` keys the on-disk cache by function, so one Python
function is never compiled twice with different options).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

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
def span_max(span: np.ndarray, lanes: np.ndarray) -> float:
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
def push_rows(
    sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray,
    heap_offset: int, maxima: np.ndarray, group: int,
) -> None:  # fmt: skip
    """Offer ``sims[i, j]`` (row ``rows[i]``, candidate ``cols[j]``) to each row's top-m min-heap
    (``heap_vals[rows[i] - heap_offset]``: all rows' heaps, or only a row block's).

    Chunks of ``CHUNK`` values are skipped at once when their maximum (see
    :func:`span_max`) does not beat the row's current threshold, as most do once the
    heap is full; only the rest are looked at one by one. With ``group`` (a
    power of two; ``cols`` consecutive from a multiple of it), the chunk
    maxima also go into ``maxima[rows[i], cols[j] // group]``.
    """
    n_cols = sims.shape[1]
    width = min(CHUNK, group) if group else CHUNK
    for i in prange(sims.shape[0]):
        r = rows[i]
        vals = heap_vals[r - heap_offset]
        ids = heap_ids[r - heap_offset]
        threshold = vals[0]
        lanes = np.empty(LANES, dtype=sims.dtype)
        for start in range(0, n_cols, width):
            stop = min(n_cols, start + width)
            top = span_max(sims[i, start:stop], lanes)
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


# Reads in one piece: a numba kernel: one loop nest, split it and the compiler loses the fusion.
@njit(parallel=True, cache=True, nogil=True, fastmath=True)
def push_columns(
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


# reassociation lets the float64 sum run in SIMD lanes (4x here); it moves a distance by at most a few ulps
@njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
def rows_distances(q: np.ndarray, rows: np.ndarray, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``out[i, j] = ||q[rows[i]] - x[ids[i, j]]||`` in float64 (direct differences, no cancellation)."""
    out = np.empty(ids.shape, dtype=np.float64)
    d = x.shape[1]
    for i in prange(ids.shape[0]):
        a = rows[i]
        for j in range(ids.shape[1]):
            b = ids[i, j]
            acc = 0.0
            for t in range(d):
                diff = np.float64(q[a, t]) - np.float64(x[b, t])
                acc += diff * diff
            out[i, j] = np.sqrt(acc)
    return out


def exact_distances(x: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``out[i, j] = ||x[rows[i]] - x[ids[i, j]]||`` in float64: rows of one matrix against its own rows."""
    return rows_distances(x, rows, x, ids)


def cross_distances(q: np.ndarray, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``out[i, j] = ||q[i] - x[ids[i, j]]||`` in float64: rows of one matrix against rows of another."""
    return rows_distances(q, np.arange(q.shape[0]), x, ids)


@njit(parallel=True, cache=True, nogil=True, fastmath={"reassoc", "contract"})
def pair_distances_between(q: np.ndarray, x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[p] = ||q[a[p]] - x[b[p]]||`` in float64 (direct differences): pairs across two matrices."""
    out = np.empty(a.size, dtype=np.float64)
    d = x.shape[1]
    for p in prange(a.size):
        acc = 0.0
        for t in range(d):
            diff = np.float64(q[a[p], t]) - np.float64(x[b[p], t])
            acc += diff * diff
        out[p] = np.sqrt(acc)
    return out


def pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``out[p] = ||x[a[p]] - x[b[p]]||`` in float64 (direct differences), as :func:`exact_distances`."""
    return pair_distances_between(x, x, a, b)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def distance(x: np.ndarray, a: int, b: int) -> float:
    """``||x[a] - x[b]||`` in float64 (direct differences), as :func:`exact_distances`."""
    acc = 0.0
    for t in range(x.shape[1]):
        diff = np.float64(x[a, t]) - np.float64(x[b, t])
        acc += diff * diff
    return np.sqrt(acc)
