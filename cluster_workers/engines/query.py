"""Certified nearest sample rows of new points: what ``assign`` asks of a frozen sample.

The sample is indexed once (:func:`sample_index`): its rows in the order of
k-means cells of about ``GROUP`` rows (:mod:`.order`), each cell a group with
its mean direction ``a`` and width ``w`` (the largest angle of a row from
``a``). A query at angle ``t`` from ``a`` is at least ``t - w`` from every row
of the group, so one float32 product with ``a`` (within the screen's error
bound, :mod:`.bounds`) bounds the similarity of every row of the group. Per
query the rows of its best group give an upper bound ``d`` on its ``k``-th
distance; a group whose bound says every row is farther than ``d`` is never
read. The groups left are screened as :func:`.neighbours.nearest` screens (float32
GEMM, bounded heaps, float64 rerank); a query whose ``k``-th distance the
screen cannot prove is measured again against the whole sample. Queries are
taken in the order of their best group, so that a block of them needs few groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from cluster_workers.engines.bounds import (
    UNIT_ROUNDOFF,
    distance_ceilings,
    distance_floors,
    similarity_cuts32,
    similarity_error,
    similarity_floors,
)
from cluster_workers.engines.kernels import cross_distances, pair_distances_between, push_rows
from cluster_workers.engines.neighbours import ScreenTuning, tick
from cluster_workers.engines.order import cell_labels

GROUP = 128  # sample rows per k-means cell, on average: each cell bounded by one axis and width
SEED_GROUPS = 3  # a query's best groups (times k / the mean group size) whose rows bound its k-th distance
FULL_SCAN_SHARE = 0.3  # a query that may need more of the sample than this reads all of it, in blocks of its like
QUERY_BLOCK = 256  # queries screened together (in their best group's order)


@dataclass(frozen=True)
class SampleIndex:
    """A frozen sample ready for queries: rows in cell order, groups with axes and widths."""

    x: np.ndarray  # (n, d) float32 unit rows, in cell order
    order: np.ndarray  # (n,) int64: row i of ``x`` is sample row order[i]
    starts: np.ndarray  # (g + 1,) group i is rows starts[i]:starts[i + 1] of ``x``
    axes: np.ndarray  # (g, d) float32 unit vectors: each group's mean direction
    widths: np.ndarray  # (g,) float64 radians, rounded up: the largest angle of a row from its group's axis
    err: float  # the screen's bound for the sample's rows

    @property
    def groups(self) -> int:
        return int(self.axes.shape[0])


def sample_index(sample: np.ndarray) -> SampleIndex:
    """Index the rows of ``sample`` (float32, L2-normalised): one cell-ordered copy of the vectors."""
    n = sample.shape[0]
    cells = cell_labels(sample, cells=max(1, n // GROUP)) if n >= 2 * GROUP else np.zeros(n, dtype=np.int64)
    order = np.argsort(cells, kind="stable")
    x = np.ascontiguousarray(sample[order])
    starts = np.r_[0, np.flatnonzero(np.diff(cells[order])) + 1, n]
    g = starts.size - 1
    axes = np.empty((g, x.shape[1]), dtype=np.float32)
    widths = np.empty(g)
    for i in range(g):
        rows = x[starts[i] : starts[i + 1]].astype(np.float64)
        mean = rows.sum(axis=0)
        axes[i] = mean / max(np.linalg.norm(mean), 1e-300)
        axis = axes[i].astype(np.float64)
        cosines = rows @ axis / (np.linalg.norm(rows, axis=1) * np.linalg.norm(axis))
        widths[i] = np.arccos(np.clip(cosines, -1.0, 1.0)).max()
    return SampleIndex(x, order.astype(np.int64), starts, axes, widths + 1e-9, similarity_error(x))


def _group_bounds(q: np.ndarray, index: SampleIndex) -> np.ndarray:
    """``(q, g)`` float64 upper bounds on the unit similarity ``1 - ||q - s||^2 / 2`` of q with every row of each group.

    A group's rows lie within angle ``w`` of its unit axis ``a``; a query at angle ``t`` from ``a`` is at least
    ``t - w`` from each of them, so ``q . s <= ||q|| ||s|| cos(max(0, t - w))``. The angle ``t`` is taken from the
    float32 product, made smaller by its error bound (a larger bound); norms and the unit similarity's own
    difference from the inner product add the screen's ``eta``.
    """
    d = q.shape[1]
    gamma = d * UNIT_ROUNDOFF / (1.0 - d * UNIT_ROUNDOFF)
    q64 = q.astype(np.float64)
    q_norm = np.sqrt(np.einsum("ij,ij->i", q64, q64))
    axis_norm = float(np.linalg.norm(index.axes.astype(np.float64), axis=1).max())
    eta = max(float(np.abs(q_norm**2 - 1).max()), index.err)
    dots = (q @ index.axes.T).astype(np.float64) + gamma * q_norm[:, None] * axis_norm
    cos_t = np.clip(dots / (q_norm[:, None] * axis_norm), -1.0, 1.0)  # a larger cosine: a smaller angle
    gap = np.maximum(0.0, np.arccos(cos_t) - index.widths[None, :])
    return q_norm[:, None] * np.sqrt(1.0 + eta) * np.cos(gap) + eta + 1e-12


def nearest_in(
    queries: np.ndarray,
    index: SampleIndex,
    k: int,
    on_block: Callable[[], object] | None = None,
    tuning: ScreenTuning = ScreenTuning(),
    prune: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The ``k`` nearest sample rows of each query (float32 unit rows), certified.

    Returns ``(ids, dist, stats)``: ``(q, k)`` int64 sample rows (the sample's own numbering) nearest first,
    equal distances in row order; ``(q, k)`` float64 exact distances; and how the work went (``recomputed``:
    queries measured again against the whole sample; ``read_share``: the share of query-row pairs screened).
    ``prune=False`` screens every query against the whole sample (the straightforward baseline, same answer).
    """
    n = index.x.shape[0]
    k = min(k, n)
    m = min(n, k + max(tuning.margin, k // 4))  # dense regions: a wider heap leaves fewer lists to remeasure
    err = max(similarity_error(queries), index.err)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    dist = np.empty((queries.shape[0], k))
    best = np.concatenate([np.argmax(queries[s : s + 8192] @ index.axes.T, axis=1) for s in range(0, queries.shape[0], 8192)])
    visit = np.argsort(best, kind="stable")
    recomputed, read, deferred = 0, 0, []
    for a in range(0, visit.size, QUERY_BLOCK):
        rows = visit[a : a + QUERY_BLOCK]
        q = np.ascontiguousarray(queries[rows])
        needed, reach = _needed_groups(q, index, best[rows], k, err)
        wide = needed @ np.diff(index.starts) > (FULL_SCAN_SHARE * n if prune else -1)  # diffuse: read everything, with its like
        deferred.append(rows[wide])
        if not wide.all():
            cols = _rows_of(index, needed[~wide].any(axis=0))
            ids[rows[~wide]], dist[rows[~wide]], again = _screen(q[~wide], index, cols, k, m, err, on_block, tuning, reach[~wide])
            recomputed, read = recomputed + again, read + cols.size * int((~wide).sum())
    wide_rows = np.concatenate(deferred) if deferred else np.empty(0, dtype=np.int64)
    for a in range(0, wide_rows.size, tuning.block_rows):
        rows = wide_rows[a : a + tuning.block_rows]
        ids[rows], dist[rows], again = _screen(np.ascontiguousarray(queries[rows]), index, None, k, m, err, on_block, tuning)
        recomputed, read = recomputed + again, read + n * rows.size
    return ids, dist, {"recomputed": recomputed, "read_share": read / max(1, queries.shape[0] * n),
                       "full_scans": int(wide_rows.size)}  # fmt: skip


def _screen(q, index, cols, k, m, err, on_block, tuning, reach=None):  # type: ignore[no-untyped-def]
    """The certified ``k`` nearest of the rows ``cols`` of the index (None: all) for each query of ``q``;
    ``reach``: per query, a distance within which every row is among ``cols`` (the seed bound)."""
    local = np.arange(q.shape[0])
    heap_vals = np.full((q.shape[0], m), -np.inf, dtype=np.float32)
    heap_ids = np.zeros((q.shape[0], m), dtype=np.int32)
    no_maxima = np.empty((1, 1), dtype=np.float32)
    total = index.x.shape[0] if cols is None else cols.size
    for c in range(0, total, tuning.block_cols):
        tick(on_block)
        if cols is None:  # contiguous rows: a view; needed rows are gathered into one large GEMM, not many small
            part = np.arange(c, min(total, c + tuning.block_cols))
            block = index.x[c : c + tuning.block_cols]
        else:
            part = cols[c : c + tuning.block_cols]
            block = index.x[part]
        push_rows(q @ block.T, local, part, heap_vals, heap_ids, 0, no_maxima, 0)
    cand = heap_ids.astype(np.int64)
    ids, dist = _first_k(index.order[cand], cross_distances(q, index.x, cand), k)
    lowest = heap_vals.min(axis=1).astype(np.float64)
    screened = np.where(np.isfinite(lowest), distance_floors(lowest, err), np.inf)  # not full: it holds all
    unproven = np.flatnonzero(dist[:, -1] >= screened)
    # a list whose k-th distance is within the seed bound has every candidate among ``cols``: remeasure only those
    local_ball = np.zeros(unproven.size, dtype=bool) if reach is None or cols is None else dist[unproven, -1] <= reach[unproven]
    for rows_of_ball, among in ((unproven[local_ball], cols), (unproven[~local_ball], None)):
        for s in range(0, rows_of_ball.size, tuning.recompute_rows):
            batch = rows_of_ball[s : s + tuning.recompute_rows]
            ids[batch], dist[batch] = _remeasure(q[batch], index, dist[batch, -1], k, err, on_block, tuning, among)
    return ids, dist, int(unproven.size)


def _rows_of(index: SampleIndex, groups: np.ndarray) -> np.ndarray:
    """The index rows of the groups marked in ``groups`` (a boolean per group), in order."""
    edges = np.flatnonzero(np.diff(np.r_[0, groups.astype(np.int8), 0]))
    spans = [(int(index.starts[g0]), int(index.starts[g1])) for g0, g1 in zip(edges[::2], edges[1::2])]
    return np.concatenate([np.arange(lo, hi) for lo, hi in spans]) if spans else np.empty(0, dtype=np.int64)


def _needed_groups(q: np.ndarray, index: SampleIndex, best: np.ndarray, k: int, err: float) -> tuple[np.ndarray, np.ndarray]:
    """``(q, g)``: the groups that may hold one of each query's ``k`` nearest rows (its best groups always), and per
    query the distance within which every row lies in those groups (an upper bound on its ``k``-th distance).

    The bound: the rows of the block's best groups (each query's best few, together) screened in one float32
    GEMM; a screened value ``s`` puts a row within ``sqrt(2 - 2 (s - err))``, so the ``k``-th smallest of those
    ceilings bounds the ``k``-th distance from above.
    """
    bounds = _group_bounds(q, index)
    size = np.diff(index.starts)
    per_query = max(SEED_GROUPS, int(np.ceil(SEED_GROUPS * k / max(1.0, float(size.mean())))))
    seeds = np.argpartition(-bounds, min(per_query, bounds.shape[1] - 1), axis=1)[:, :per_query]
    chosen = np.zeros(index.groups, dtype=bool)
    chosen[seeds] = True
    chosen[best] = True
    seed_cols = _rows_of(index, chosen)
    if seed_cols.size < k:
        reach = np.full(q.shape[0], np.inf)
    else:
        screened = (q @ index.x[seed_cols].T).astype(np.float64)
        ceilings = distance_ceilings(screened, err)
        reach = np.partition(ceilings, k - 1, axis=1)[:, k - 1]
    needed = bounds >= similarity_floors(reach, 1e-12)[:, None]  # every row within reach: in a needed group
    needed[np.arange(q.shape[0]), best] = True
    return needed, reach


def _remeasure(q, index, kth, k, err, on_block, tuning, cols=None):  # type: ignore[no-untyped-def]
    """The ``k`` nearest of each query from every sample row (of ``cols``, when every row within ``kth`` is there)
    whose screened value could put it within ``kth``."""
    cut = similarity_cuts32(kth, err)  # rounded down: it stays a bound
    pair_rows, pair_cols = [], []
    total = index.x.shape[0] if cols is None else cols.size
    for lo in range(0, total, tuning.block_cols):
        tick(on_block)
        part = np.arange(lo, min(total, lo + tuning.block_cols)) if cols is None else cols[lo : lo + tuning.block_cols]
        block = index.x[lo : lo + tuning.block_cols] if cols is None else index.x[part]
        i, j = np.nonzero(q @ block.T >= cut[:, None])
        pair_rows.append(i)
        pair_cols.append(part[j])
    i, j = np.concatenate(pair_rows), np.concatenate(pair_cols).astype(np.int64)
    d = pair_distances_between(q, index.x, i, j)
    j = index.order[j]
    order = np.lexsort((j, d, i))
    i, j, d = i[order], j[order], d[order]
    bounds = np.searchsorted(i, np.arange(q.shape[0] + 1))
    if np.any(np.diff(bounds) < k):  # the k rows already listed lie within kth: the cut cannot miss them
        raise AssertionError("the remeasured ball holds fewer rows than the screen listed")
    take = bounds[:-1, None] + np.arange(k)[None, :]
    return j[take], d[take]


def _first_k(cand: np.ndarray, dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row the ``k`` smallest distances and their ids, equal distances in id order."""
    order = np.lexsort((cand, dist), axis=1)[:, :k]
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(dist, order, axis=1)
