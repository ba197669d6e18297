"""Certified nearest neighbours and core distances of unit vectors, in float64.

1. **Screen** with float32 GEMM, keeping each row's ``m`` largest inner
   products in a bounded heap (numba; no ``argpartition`` over ``n``-wide rows).
   Two layouts, the same answer: *symmetric* blocks (block ``(I, J)`` serves
   the rows of ``I`` and, transposed, those of ``J``: half the arithmetic, but
   every row's heap alive at once) when the heaps fit ``heap_bytes``, else
   *row blocks* against all columns (twice the arithmetic, heaps of one block
   only: memory that does not grow with ``min_samples``).
2. **Rerank** the kept candidates with the distance recomputed in float64 as
   ``sqrt(sum((x - y)**2))`` -- the way the ``hdbscan`` package computes it.
3. **Certify** each row (:mod:`.bounds`): every point the heap left out has a
   screened value at most the heap's smallest, so it is at least
   ``distance_floor(heap_min)`` away. A row whose core distance is within that
   floor is proven; any other row (more near-copies than the heap holds, or
   ties closer than float32 can tell) is **recomputed**: every point whose
   screened value could put it within the row's current core distance is
   collected (groups whose kept maximum rules them out skipped) and measured
   in float64, and the core distance is taken from all of them.

Rows may carry *weights* (copies of one vector collapsed into one row): the
core distance is then the smallest distance within which the weights reach
``min_samples + 1``, the point's own copies included (the ``hdbscan``
package's definition on the expanded data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import get_num_threads, njit

from cluster_workers.engines.bounds import distance_floors, similarity_cuts32, similarity_error
from cluster_workers.engines.kernels import CHUNK, exact_distances, pair_distances, push_columns, push_rows


@dataclass(frozen=True)
class ScreenTuning:
    """Block sizes of the neighbour screen (no result depends on them)."""

    block_rows: int = 2048  # rows of one similarity block
    block_cols: int = 8192  # its columns: 2048 x 8192 float32 = 64 MiB
    margin: int = 8  # screened candidates beyond the list, reranked exactly: fewer rows to recompute
    heap_bytes: int = 256 << 20  # symmetric screen while every row's heap fits this ...
    heap_data_ratio: float = 1.0  # ... or this multiple of the vectors' own size; else row blocks
    rerank_bytes: int = 64 << 20  # temporaries of one rerank chunk (n x m float64 never held whole)
    recompute_rows: int = 256  # uncertified rows recomputed together


@dataclass
class NeighbourGraph:
    """Each row's nearest rows, certified, and what bounds the rest."""

    ids: np.ndarray  # (n, L) int32, nearest first (the row itself first or tied at 0)
    dist: np.ndarray  # (n, L) float64, exact
    core: np.ndarray  # (n,) float64, exact core distances
    lower: np.ndarray  # (n,) float64: every row not in ids[a] is at least lower[a] from a
    stats: dict = field(default_factory=dict)


def group_size(n: int, budget: int, block_rows: int = ScreenTuning.block_rows) -> int:
    """The smallest group (a power of two, 64 to ``block_rows``) whose ``n × groups`` float32 maxima fit ``budget`` bytes; 0 if none."""
    group = CHUNK
    while group <= block_rows:
        if n * (-(-n // group)) * 4 <= budget:
            return group
        group *= 2
    return 0


def heap_width(n: int, min_samples: int, list_len: int, margin: int) -> int:
    """Candidates kept per row by the screen."""
    return min(n, max(list_len, min_samples + 1) + margin)


def rerank_rows(m: int, tuning: ScreenTuning) -> int:
    """Rows reranked at once: about 40 bytes of temporaries per candidate."""
    return int(min(8192, max(256, tuning.rerank_bytes // (40 * m))))


def uses_row_blocks(n: int, m: int, dim: int, tuning: ScreenTuning) -> bool:
    """Whether every row's heap (float32 value, int32 id) would exceed the budget: ``heap_bytes`` or
    ``heap_data_ratio`` times the vectors' own size, whichever is larger (memory in proportion to the data,
    never to ``min_samples``)."""
    return n * m * 8 > max(tuning.heap_bytes, tuning.heap_data_ratio * 4 * n * dim)


# Reads in one piece: the screen's phases in order (blocks, rerank, certificate, recompute), each a call.
def nearest(
    x: np.ndarray,
    min_samples: int,
    list_len: int,
    weights: np.ndarray | None = None,
    maxima: np.ndarray | None = None,
    group: int = 0,
    on_block: Callable[[], object] | None = None,
    certify: bool = True,
    tuning: ScreenTuning = ScreenTuning(),
) -> NeighbourGraph:
    """The ``list_len`` nearest rows of every row of ``x`` (float32 unit rows), and certified core distances.

    ``maxima`` (``n × ceil(n / group)`` float32): filled with each row's
    largest inner product with every group of ``group`` consecutive rows, and
    used to skip groups when a row is recomputed. ``certify=False`` keeps the
    screen's answer for every row (for tests that show what the certificate does).
    """
    n = x.shape[0]
    weights = np.ones(n, dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    list_len = min(list_len, n)
    m = heap_width(n, min_samples, list_len, tuning.margin)
    err = similarity_error(x)
    graph = NeighbourGraph(np.empty((n, list_len), dtype=np.int32), np.empty((n, list_len)), np.empty(n), np.empty(n))
    floor = np.empty(n)  # distance below which the screen kept every row
    if maxima is None:
        maxima, group = np.empty((1, 1), dtype=np.float32), 0
    screen = _Screen(x, m, weights, min_samples, err, maxima, group, on_block, graph, floor, tuning)
    row_blocks = uses_row_blocks(n, m, x.shape[1], tuning)
    if row_blocks:
        _screen_row_blocks(screen)
    else:
        heap_vals, heap_ids = _screen_symmetric(x, m, maxima, group, on_block, tuning)
        step = rerank_rows(m, tuning)
        for s in range(0, n, step):
            rows = np.arange(s, min(n, s + step))
            _rerank(screen, rows, heap_vals[rows], heap_ids[rows])
        del heap_vals, heap_ids
    proven = graph.core <= floor
    unproven = np.flatnonzero(~proven)
    if certify and unproven.size:
        _recompute(screen, unproven)
    graph.stats = {
        "screen": "row blocks" if row_blocks else "symmetric",
        "heap_width": int(m),
        "similarity_error": err,
        "rows": int(n),
        "proven_by_screen": int(n - unproven.size),
        "recomputed": int(unproven.size) if certify else 0,
        "certified": int(n) if certify else int(n - unproven.size),
    }
    return graph


def _screen_symmetric(x, m, maxima, group, on_block, tuning):  # type: ignore[no-untyped-def]
    """Every row's ``m`` largest inner products (itself included), by symmetric float32 GEMM.

    First every row chunk ``I`` meets itself (one square block): with rows in
    cell order (:mod:`.order`) that fills each heap with near candidates, so
    its threshold is high from the start and the rest push little. Then ``I``
    meets every later row in wide blocks, each serving both its rows and its
    columns: the upper triangle of ``X @ X.T``.
    """
    n, block_rows, block_cols = x.shape[0], tuning.block_rows, tuning.block_cols
    heap_vals = np.full((n, m), -np.inf, dtype=np.float32)
    heap_ids = np.zeros((n, m), dtype=np.int32)
    for a in range(0, n, block_rows):
        tick(on_block)
        xa = x[a : a + block_rows]  # a view, not a copy
        rows = np.arange(a, a + xa.shape[0])
        push_rows(xa @ xa.T, rows, rows, heap_vals, heap_ids, 0, maxima, group)
    for a in range(0, n, block_rows):
        rows = np.arange(a, min(n, a + block_rows))
        xa = x[a : a + block_rows]
        for b in range(rows[-1] + 1, n, block_cols):
            tick(on_block)
            cols = np.arange(b, min(n, b + block_cols))
            sims = xa @ x[b : b + block_cols].T
            push_rows(sims, rows, cols, heap_vals, heap_ids, 0, maxima, group)
            push_columns(sims, rows, cols, heap_vals, heap_ids, maxima, group, get_num_threads())
    return heap_vals, heap_ids


@dataclass
class _Screen:
    """One screen's inputs and outputs, shared by its phases (row blocks, rerank, recompute)."""

    x: np.ndarray  # (n, d) float32 unit rows
    m: int  # heap width
    weights: np.ndarray  # (n,) int64: copies each row stands for
    min_samples: int
    err: float  # the float32 screen's similarity error (bounds.py)
    maxima: np.ndarray  # per row, its largest inner product with each group of rows
    group: int  # rows per group of ``maxima`` (0: no groups)
    on_block: Callable[[], object] | None
    graph: NeighbourGraph  # filled in: lists, core distances, lower bounds
    floor: np.ndarray  # (n,) filled in: the distance below which the screen kept every row
    tuning: ScreenTuning


def _screen_row_blocks(screen: _Screen) -> None:
    """Each block of rows against every column (its own square first), reranked at once: heaps of one block only."""
    x, m, maxima, group, on_block, tuning = screen.x, screen.m, screen.maxima, screen.group, screen.on_block, screen.tuning
    n, block_rows, block_cols = x.shape[0], tuning.block_rows, tuning.block_cols
    for a in range(0, n, block_rows):
        end = min(n, a + block_rows)
        rows = np.arange(a, end)
        heap_vals = np.full((rows.size, m), -np.inf, dtype=np.float32)
        heap_ids = np.zeros((rows.size, m), dtype=np.int32)
        xa = x[a:end]
        spans = [(a, end)]
        spans += [(lo, min(a, lo + block_cols)) for lo in range(0, a, block_cols)]
        spans += [(lo, min(n, lo + block_cols)) for lo in range(end, n, block_cols)]
        for lo, hi in spans:  # every span starts at a multiple of the group: the maxima stay aligned
            tick(on_block)
            push_rows(xa @ x[lo:hi].T, rows, np.arange(lo, hi), heap_vals, heap_ids, a, maxima, group)
        _rerank(screen, rows, heap_vals, heap_ids)


def tick(on_block: Callable[[], object] | None) -> None:
    if on_block is not None:
        on_block()


def _rerank(screen: _Screen, rows: np.ndarray, heap_vals: np.ndarray, heap_ids: np.ndarray) -> None:
    """Exact distances of the kept candidates of ``rows``: their lists, core distances and bounds."""
    x, weights, min_samples, err, graph, floor = (
        screen.x,
        screen.weights,
        screen.min_samples,
        screen.err,
        screen.graph,
        screen.floor,
    )
    cand = heap_ids
    dist = exact_distances(x, rows, cand)
    order = np.argsort(dist, axis=1, kind="stable")
    cand = np.take_along_axis(cand, order, axis=1)
    dist = np.take_along_axis(dist, order, axis=1)
    length = graph.ids.shape[1]
    graph.ids[rows] = cand[:, :length]
    graph.dist[rows] = dist[:, :length]
    graph.core[rows] = weighted_core(dist, weights[cand], min_samples)
    full = np.isfinite(heap_vals.min(axis=1))  # a full heap left rows out; otherwise it holds every row
    screened = np.where(full, distance_floors(heap_vals.min(axis=1), err), np.inf)
    screened[cand.shape[1] >= x.shape[0]] = np.inf
    floor[rows] = screened
    beyond = dist[:, length] if dist.shape[1] > length else np.full(rows.size, np.inf)
    graph.lower[rows] = np.minimum(beyond, screened)


def weighted_core(dist: np.ndarray, w: np.ndarray, min_samples: int) -> np.ndarray:
    """Per row (``dist`` sorted): the first distance at which the weights reach ``min_samples + 1``."""
    reached = np.cumsum(w, axis=1) >= min_samples + 1
    pos = np.where(reached.any(axis=1), np.argmax(reached, axis=1), dist.shape[1] - 1)
    return dist[np.arange(dist.shape[0]), pos]


def _recompute(screen: _Screen, rows: np.ndarray) -> None:
    """Exact core distances and lists of ``rows`` from every point that could lie within their core distance.

    A point ``b`` with ``d(a, b) <= core[a]`` (the screened core distance, an
    upper bound) has a screened value at least ``1 - core[a]**2 / 2 - err``
    in any GEMM, and a group holding one has a kept maximum at least that.
    """
    x, weights, min_samples, err, graph, floor = (
        screen.x,
        screen.weights,
        screen.min_samples,
        screen.err,
        screen.graph,
        screen.floor,
    )
    maxima, group, on_block, tuning = screen.maxima, screen.group, screen.on_block, screen.tuning
    n = x.shape[0]
    cut = similarity_cuts32(graph.core, err)  # rounded down: it stays a bound
    for s in range(0, rows.size, tuning.recompute_rows):
        tick(on_block)
        batch = rows[s : s + tuning.recompute_rows]
        if group:
            needed = (maxima[batch] >= cut[batch, None]).any(axis=0)
            edges = np.flatnonzero(np.diff(np.r_[0, needed.astype(np.int8), 0]))
            spans = [(g0 * group, min(n, g1 * group)) for g0, g1 in zip(edges[::2], edges[1::2])]
        else:
            spans = [(0, n)]
        pair_rows, pair_cols = [], []
        xb = x[batch]
        for lo, hi in spans:
            for c in range(lo, hi, tuning.block_cols):
                sims = xb @ x[c : min(hi, c + tuning.block_cols)].T
                i, j = np.nonzero(sims >= cut[batch, None])
                pair_rows.append(i)
                pair_cols.append(j + c)
        i = np.concatenate(pair_rows)
        j = np.concatenate(pair_cols)
        order = np.lexsort((j, i))
        i, j = i[order], j[order]
        ball = pair_distances(x, batch[i], j)
        ptr = np.searchsorted(i, np.arange(batch.size + 1))
        ids, dist, core, lower = _merge_ball(
            ptr, j, ball, weights, min_samples, graph.ids[batch], graph.dist[batch], graph.core[batch], floor[batch]
        )
        graph.ids[batch], graph.dist[batch], graph.core[batch], graph.lower[batch] = ids, dist, core, lower


@njit(cache=True)
def _merge_ball(ptr, cols, ball, weights, min_samples, old_ids, old_dist, old_core, screened):  # type: ignore[no-untyped-def]
    """Per row: core distance from its ball (every point within ``old_core``), list from ball and old list merged.

    Points outside both are farther than ``max(old_core, screened)``; the
    first one that does not fit the list bounds the rest from below.
    """
    rows, length = old_ids.shape
    ids = np.empty_like(old_ids)
    dist = np.empty_like(old_dist)
    core = np.empty(rows)
    lower = np.empty(rows)
    for r in range(rows):
        c = cols[ptr[r] : ptr[r + 1]]
        d = ball[ptr[r] : ptr[r + 1]]
        order = np.argsort(d, kind="mergesort")
        acc = 0
        core[r] = old_core[r]
        for t in order:
            acc += weights[c[t]]
            if acc >= min_samples + 1:
                core[r] = d[t]
                break
        extra_c = np.empty(length, dtype=np.int64)
        extra_d = np.empty(length)
        m = 0
        for t in range(length):  # old list members outside the ball (cols are sorted)
            k = np.searchsorted(c, old_ids[r, t])
            if k >= c.size or c[k] != old_ids[r, t]:
                extra_c[m] = old_ids[r, t]
                extra_d[m] = old_dist[r, t]
                m += 1
        all_c = np.concatenate((c, extra_c[:m]))
        all_d = np.concatenate((d, extra_d[:m]))
        order = np.argsort(all_d, kind="mergesort")
        for t in range(length):
            ids[r, t] = all_c[order[t]]
            dist[r, t] = all_d[order[t]]
        outside = max(old_core[r], screened[r])
        lower[r] = min(all_d[order[length]], outside) if all_d.size > length else outside
    return ids, dist, core, lower


def core_distances(dist: np.ndarray, min_samples: int) -> np.ndarray:
    """Distance to the ``min_samples``-th neighbour, self excluded (``hdbscan``'s convention), float64."""
    return np.ascontiguousarray(dist[:, min(min_samples, dist.shape[1] - 1)], dtype=np.float64)


def brute_force_core_distances(data: np.ndarray, rows: np.ndarray, min_samples: int, block_cols: int = 16_384) -> np.ndarray:
    """Core distances of ``rows`` against every row, independently of :func:`nearest`.

    float64 GEMM (columns converted a block at a time: no float64 copy of the
    data) selects every candidate whose inner product is within a float64
    error bound of the ``min_samples + 1``-th largest (near-copies and ties all
    included); those are measured with direct differences.
    """
    x = np.ascontiguousarray(data, dtype=np.float32)
    n, d = x.shape
    k = min(n, min_samples + 1)
    sq = np.concatenate([np.einsum("ij,ij->i", x[c : c + block_cols].astype(np.float64), x[c : c + block_cols].astype(np.float64))
                         for c in range(0, n, block_cols)])  # fmt: skip
    slack = 4 * (d * 2.0**-53 * sq.max() + np.abs(sq - 1).max()) + 1e-15
    out = np.empty(rows.size, dtype=np.float64)
    for s in range(0, rows.size, 128):
        q = rows[s : s + 128]
        xq = x[q].astype(np.float64)
        sims = np.concatenate([xq @ x[c : c + block_cols].astype(np.float64).T for c in range(0, n, block_cols)], axis=1)
        kth = np.partition(sims, n - k, axis=1)[:, n - k]
        for r, a in enumerate(q):
            cand = np.flatnonzero(sims[r] >= kth[r] - slack)
            dist = np.sort(pair_distances(x, np.full(cand.size, a), cand))
            out[s + r] = dist[k - 1]
    return out
