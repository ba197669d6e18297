"""The neighbour screen, pruned exactly by group caps (rows in cell order).

Groups of ``size`` consecutive rows (compact, see :mod:`.order`) are met in
batches of ``BATCH_ROWS`` rows. A pair of groups is computed -- one GEMM block
serving both directions, as in the full screen -- unless the caps
(:mod:`.caps`) prove that no row of either could take a member of the other
into its top ``m``:

1. **Near pairs first**: each batch meets itself and every group among its
   groups' ``NEAR_ROWS // size`` nearest (by centroid), so that every heap
   holds good candidates and its threshold (the ``m``-th largest so far) is high.
2. **Then the rest, only where needed**: a later group is needed by a batch
   when the cap bound of some batch row against it beats that row's
   threshold, or the bound of one of its rows against a batch group beats
   its own. Thresholds only rise, so a pair once skippable stays so; the
   needed groups are met most promising first, ``BLOCK_COLS`` rows at a
   time, judged again after each block.

Exact by construction: a skipped pair's inner product is at most its bound,
which is at most both thresholds. Group maxima of computed pairs are exact;
skipped pairs keep their bound (``GroupMaxima.exact`` tells which).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit

from cluster_workers.engines.caps import cap_bounds
from cluster_workers.engines.heaps import GroupMaxima, _column_maxima, _push_block, _push_block_columns

BATCH_ROWS = 128  # rows of one batch (whole groups): one group of the MST maxima at production size
NEAR_ROWS = 2048  # rows of the nearest groups each group meets first
BLOCK_COLS = 8192  # columns of one block (whole groups)
WIDE_SHARE = 0.8  # share of all pairs left to compute after the near ones above which the full screen is cheaper


@njit(cache=True, nogil=True)
def _need(values, thresholds, g0, g1, size, exact_row):  # type: ignore[no-untyped-def]
    """Per group ``g >= g1``: the largest excess of a cap bound over a threshold between ``g`` and groups ``g0..g1``.

    Positive: the pair could hold a neighbour and must be computed; ``-inf`` where already computed.
    """
    n, n_groups = values.shape
    score = np.full(n_groups, -np.inf)
    for a in range(g0 * size, min(n, g1 * size)):
        t = thresholds[a]
        for g in range(g1, n_groups):
            v = values[a, g] - t
            if v > score[g]:
                score[g] = v
    for g in range(g1, n_groups):
        if exact_row[g]:
            score[g] = -np.inf
            continue
        best = score[g]
        for b in range(g * size, min(n, (g + 1) * size)):
            t = thresholds[b]
            for h in range(g0, g1):
                v = values[b, h] - t
                if v > best:
                    best = v
        score[g] = best
    return score


def _predicted_share(maxima: GroupMaxima, thresholds: np.ndarray, batches: list[tuple[int, int]]) -> float:
    """The share of all pairs the pruned screen would still compute, judged by the thresholds now."""
    n, size = maxima.values.shape[0], maxima.size
    pairs = 0
    for g0, g1 in batches:
        rows = min(n, g1 * size) - g0 * size
        needed = np.flatnonzero(_need(maxima.values, thresholds, g0, g1, size, maxima.exact[g0]) > 0)
        pairs += rows * (np.minimum(n, (needed + 1) * size) - needed * size).sum()
    return pairs / (n * (n + 1) / 2)


class _Screen:
    """Heaps of every row and the group maxima, filled block by block."""

    def __init__(self, x: np.ndarray, m: int, maxima: GroupMaxima, on_block: Callable[[], object] | None) -> None:
        n = x.shape[0]
        self.x, self.maxima, self.on_block = x, maxima, on_block
        self.heap_vals = np.full((n, m), -np.inf, dtype=np.float32)
        self.heap_ids = np.zeros((n, m), dtype=np.int64)
        self.pairs = 0

    def _tick(self) -> None:
        if self.on_block is not None:
            self.on_block()

    def square(self, g0: int, g1: int) -> None:
        """Groups ``g0..g1`` among themselves."""
        size, n = self.maxima.size, self.x.shape[0]
        rows = np.arange(g0 * size, min(n, g1 * size))
        xa = self.x[rows[0] : rows[-1] + 1]
        self._tick()
        _push_block(xa @ xa.T, rows, rows, self.heap_vals, self.heap_ids, self.maxima.values, size)
        self.maxima.exact[g0:g1, g0:g1] = True
        self.pairs += rows.size * (rows.size + 1) // 2

    def meet(self, g0: int, g1: int, groups: np.ndarray) -> None:
        """Groups ``g0..g1`` with ``groups`` (sorted, all ``>= g1``), both directions, ``BLOCK_COLS`` rows at a time."""
        size, n = self.maxima.size, self.x.shape[0]
        rows = np.arange(g0 * size, min(n, g1 * size))
        xa = self.x[rows[0] : rows[-1] + 1]
        values, exact = self.maxima.values, self.maxima.exact
        per_block = max(1, BLOCK_COLS // size)
        for s in range(0, groups.size, per_block):
            chunk = groups[s : s + per_block]
            cols = (chunk[:, None] * size + np.arange(size)).ravel()
            cols = cols[cols < n]  # the last group may be short (it comes last)
            self._tick()
            sims = xa @ self.x[cols].T
            _push_block(sims, rows, cols, self.heap_vals, self.heap_ids, values, size)
            _push_block_columns(sims, rows, cols, self.heap_vals, self.heap_ids)
            _column_maxima(sims, rows[0], cols, size, values)
            exact[g0:g1, chunk] = True
            exact[chunk, g0:g1] = True
            self.pairs += rows.size * cols.size


def screen_by_caps(
    x: np.ndarray, m: int, maxima: GroupMaxima, on_block: Callable[[], object] | None = None
) -> tuple[np.ndarray | None, float]:
    """Ids of each row's ``m`` largest inner products (unordered), and the share of pairs computed.

    ``x``: unit rows in cell order (float32). Fills ``maxima`` on the way.
    Gives up after the near pairs, returning ``(None, share computed)``, when
    the caps would leave more than ``WIDE_SHARE`` of all pairs to compute
    (diffuse data, such as real text): the full screen's wide blocks cost less.
    """
    n, size = x.shape[0], maxima.size
    n_groups = maxima.values.shape[1]
    centroids = cap_bounds(x, size, maxima.values)
    maxima.exact[:] = False
    work = _Screen(x, m, maxima, on_block)
    batch = max(1, BATCH_ROWS // size)
    batches = [(g0, min(n_groups, g0 + batch)) for g0 in range(0, n_groups, batch)]
    near_count = min(n_groups, max(1, NEAR_ROWS // size))
    nearest = np.argpartition(-(centroids @ centroids.T), near_count - 1, axis=1)[:, :near_count]
    near = np.zeros((n_groups, n_groups), dtype=np.bool_)
    near[np.arange(n_groups)[:, None], nearest] = True
    near |= near.T
    for g0, g1 in batches:
        work.square(g0, g1)
        chosen = np.flatnonzero(near[g0:g1].any(axis=0))
        work.meet(g0, g1, chosen[chosen >= g1])
    total = n * (n + 1) / 2
    if _predicted_share(maxima, work.heap_vals[:, 0], batches) > WIDE_SHARE:
        return None, work.pairs / total
    per_block = max(1, BLOCK_COLS // size)
    for g0, g1 in batches:
        while True:
            score = _need(maxima.values, work.heap_vals[:, 0], g0, g1, size, maxima.exact[g0])
            chosen = np.flatnonzero(score > 0)
            if not chosen.size:
                break
            if chosen.size > per_block:
                chosen = np.sort(chosen[np.argsort(-score[chosen], kind="stable")[:per_block]])
            work.meet(g0, g1, chosen)
    return work.heap_ids, work.pairs / total
