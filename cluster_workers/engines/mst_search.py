"""The searches of the Borůvka rounds (:mod:`.mst`): points against the points outside their component.

A search keeps, per point, its lightest edges into ``slots`` distinct
components of the round, with exact weights: a float32 GEMM screens every pair
and the numba kernels of :mod:`.mst_slots` take a pair's weight in float64 only
where the screen's error bound leaves it a chance. Three ways to search: a
block of points against everyone, every point at once in one symmetric pass,
or each point only against the groups of rows whose maximum inner product
could beat its slots (*group maxima*).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from cluster_workers.engines.mst_slots import (
    CLOSED,
    offer_columns,
    offer_leading_groups,
    offer_rows,
    offer_rows_serial,
    reachable_groups,
)


@dataclass(frozen=True)
class MSTTuning:
    """How the searches are batched (no result depends on it; tests shrink it to force every path)."""

    slots: int = 8  # lightest edges into distinct components kept per searched point
    search_rows: int = 1024  # points searched together in order of bound
    pair_rows: int = 2048  # rows of one symmetric search block
    block_cols: int = 8192  # columns of one search block
    symmetric_share: float = 0.25  # search everyone at once when this share of all points needs a search
    leading_groups: int = 16  # groups a point meets first (its largest maxima), to fill its slots
    group_rows: int = 128  # points searched together against the groups any of them needs
    group_step: int = 16  # groups met at once before the points' bounds are tightened again


def _group_components(comp: np.ndarray, group: int) -> np.ndarray:
    """Per group of ``group`` consecutive points: their component if they share one, else -1."""
    n = comp.size
    starts = np.arange(0, n, group)
    low, high = np.minimum.reduceat(comp, starts), np.maximum.reduceat(comp, starts)
    return np.where(low == high, low, -1)


class SlotSearch:
    """Searches of points against the points outside their component, remembered in slots (exact weights)."""

    def __init__(
        self, x: np.ndarray, core: np.ndarray, reach: np.ndarray, err: float, tuning: MSTTuning,
        on_block: Callable[[], object] | None,
    ) -> None:  # fmt: skip
        n = x.shape[0]
        self.x, self.core, self.reach, self.err, self.tuning, self.on_block = x, core, reach, err, tuning, on_block
        self.bound = reach.copy()  # no outside point missing from a's neighbour list and slots is lighter
        self.slot_w = np.full((n, tuning.slots), np.inf)
        self.slot_b = np.full((n, tuning.slots), -1, dtype=np.int64)
        self.slot_c = np.full((n, tuning.slots), -1, dtype=np.int64)
        self.searched = 0
        self.pairs = 0  # point pairs computed by the searches

    def tick(self) -> None:
        if self.on_block is not None:
            self.on_block()

    def _slots(self) -> tuple:
        return self.slot_w, self.slot_b, self.slot_c

    def _start(self, points: np.ndarray, n_comp: int) -> None:
        """Empty the slots of ``points``; with fewer than ``slots`` other components, the spare slots are closed."""
        self.slot_w[points] = np.inf
        self.slot_b[points] = -1
        self.slot_c[points] = -1
        spare = max(0, self.slot_w.shape[1] - (n_comp - 1))
        self.slot_w[points[:, None], np.arange(spare)] = -np.inf  # never the heaviest: it takes no edge
        self.slot_c[points[:, None], np.arange(spare)] = CLOSED
        self.searched += int(points.size)

    def _finish(self, points: np.ndarray) -> None:
        """Bounds of freshly searched ``points`` raised to their heaviest slot.

        Every slot filled: no edge left out is lighter than the heaviest slot;
        with closed slots, every other component has its slot, and so will
        every later one (a union of them): nothing left out can matter. An
        empty slot proves nothing beyond the point's neighbour list.
        """
        weights = self.slot_w[points]
        found = self.slot_b[points] >= 0
        closed = self.slot_c[points] == CLOSED
        heaviest = np.where(found.all(axis=1), weights.max(axis=1), np.inf)
        heaviest[~(found | closed).all(axis=1)] = -np.inf
        self.bound[points] = np.maximum(self.reach[points], heaviest)
        self.slot_w[points] = np.where(found, weights, np.inf)  # a closed slot holds no edge

    def _offer(self, sims, rows, cols, comp, group_comp=None, group=0, serial=False) -> None:  # type: ignore[no-untyped-def]
        group_comp = np.empty(0, dtype=np.int64) if group_comp is None else group_comp
        kernel = offer_rows_serial if serial else offer_rows
        kernel(self.x, sims, rows, cols, self.core, comp, *self._slots(), group_comp, group, self.err)

    def block(self, points: np.ndarray, comp: np.ndarray) -> None:
        """Search ``points`` against every point."""
        self._start(points, int(comp.max()) + 1)
        n, width = self.x.shape[0], self.tuning.block_cols
        xp = self.x[points]
        for lo in range(0, n, width):
            self.tick()
            hi = min(n, lo + width)
            self._offer(xp @ self.x[lo:hi].T, points, np.arange(lo, hi), comp)
        self.pairs += points.size * n
        self._finish(points)

    def symmetric(self, points: np.ndarray, comp: np.ndarray) -> None:
        """Search ``points`` against every point; pairs inside ``points`` are computed once for both ends.

        As the neighbour screen: each chunk of rows meets itself, then the later
        points in wide blocks that serve rows and columns, then the other points.
        """
        n, pair_rows, width = self.x.shape[0], self.tuning.pair_rows, self.tuning.block_cols
        self._start(points, int(comp.max()) + 1)
        points = np.sort(points)
        self.pairs += points.size * n - points.size * (points.size - 1) // 2
        others = np.setdiff1d(np.arange(n), points, assume_unique=True)
        for s in range(0, points.size, pair_rows):
            rows = points[s : s + pair_rows]
            xr = self.x[rows]
            self.tick()
            self._offer(xr @ xr.T, rows, rows, comp)
            for c in range(s + pair_rows, points.size, width):
                self.tick()
                cols = points[c : c + width]
                sims = xr @ self.x[cols].T
                self._offer(sims, rows, cols, comp)
                offer_columns(self.x, sims, rows, cols, self.core, comp, *self._slots(), self.err)
            for c in range(0, others.size, width):
                self.tick()
                cols = others[c : c + width]
                self._offer(xr @ self.x[cols].T, rows, cols, comp)
        self._finish(points)

    def by_group_maxima(self, points: np.ndarray, comp: np.ndarray, maxima: np.ndarray, group: int) -> None:
        """Search ``points`` against only the groups (``group`` consecutive points) that could hold a slot.

        ``maxima[a, g]``: a's largest inner product with group ``g``, from the
        neighbour screen. ``group_rows`` consecutive points at a time meet
        first their ``leading_groups`` best groups, then every group whose
        maximum could still beat one of their slots (:func:`reachable_groups`),
        ``group_step`` groups at a time, best first, each step tightening the bounds.
        """
        self._start(points, int(comp.max()) + 1)
        group_comp = _group_components(comp, group)
        group_core = np.maximum.reduceat(self.core, np.arange(0, self.core.size, group))
        ordered = np.sort(points)
        rows_at_once = self.tuning.group_rows
        batches = [ordered[s : s + rows_at_once] for s in range(0, ordered.size, rows_at_once)]
        self.tick()  # not inside: a thread-count change there would be undone on leaving the BLAS limit
        workers = numba.get_num_threads()

        def search(rows: np.ndarray) -> int:
            return self._search_batch(rows, comp, maxima, group, group_comp, group_core)

        # many small GEMMs: one thread each (BLAS and numba threads spinning between them would starve each other),
        # batches side by side (each writes only its own points' slots)
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            self.pairs += sum(pool.map(search, batches))
        self._finish(points)

    def _search_batch(self, rows, comp, maxima, group, group_comp, group_core) -> int:  # type: ignore[no-untyped-def]
        """Search ``rows`` (sorted) against the groups they need; returns the pairs computed."""
        xr = self.x[rows]
        done = offer_leading_groups(rows, maxima, group_comp, comp, self.tuning.leading_groups)
        pairs = self._offer_groups(xr, rows, done, group, comp, group_comp)
        while True:  # the most promising of the groups still reachable, until none is
            rest = np.flatnonzero(reachable_groups(
                rows, maxima, group_comp, group_core, self.core, comp, *self._slots(), done, self.err
            ))  # fmt: skip
            if not rest.size:
                return pairs
            if rest.size > self.tuning.group_step:
                rest = rest[np.argsort(-maxima[rows][:, rest].max(axis=0), kind="stable")[: self.tuning.group_step]]
            step = np.zeros_like(done)
            step[rest] = True
            pairs += self._offer_groups(xr, rows, step, group, comp, group_comp)
            done |= step

    def _offer_groups(self, xr, rows, chosen, group, comp, group_comp) -> int:  # type: ignore[no-untyped-def]
        """Offer every pair of ``rows`` with a member of a ``chosen`` group (GEMMs over runs of them); returns the pairs."""
        n, width = self.x.shape[0], self.tuning.block_cols
        edges = np.flatnonzero(np.diff(np.r_[0, chosen.astype(np.int8), 0]))
        pairs = 0
        for g0, g1 in zip(edges[::2], edges[1::2]):
            for lo in range(g0 * group, min(n, g1 * group), width):
                hi = min(n, g1 * group, lo + width)
                pairs += rows.size * (hi - lo)
                self._offer(xr @ self.x[lo:hi].T, rows, np.arange(lo, hi), comp, group_comp, group, serial=True)
        return pairs
