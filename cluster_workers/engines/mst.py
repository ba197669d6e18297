"""The exact minimum spanning tree of the mutual-reachability graph, by Borůvka rounds.

``mrd(a, b) = max(core[a], core[b], d(a, b))``. Each round, every component
(but the largest) finds its lightest outgoing edge *exactly*, and all those
edges join the tree (a union-find drops the one that would close a cycle when
weights tie). An edge found this way is in a minimum spanning tree by the cut
property, so the result is HDBSCAN's tree, not a kNN-graph approximation.

Finding a component's lightest edge cheaply: point ``a``'s exact ``k``-nearest
list gives its best listed edge to another component; any unlisted point ``b``
is at least ``r_a`` (the ``k``-th neighbour distance) away, so
``mrd(a, b) >= max(core[a], r_a)``: a's *bound*. Points whose bound is below
their component's best known edge are searched against every point outside
the component (float32 GEMM screen, chosen edges recomputed in float64), in
order of their bound, stopping as soon as the bound passes the best edge.

A search keeps, per point, its lightest edges into ``SLOTS`` distinct
components (of that round). Components only grow, so in later rounds a slot
whose component is still outside stays exact, and every other outside point is
at least the heaviest slot away: the point's bound rises to it, and the point
is searched again only when merges have used up its slots. When a quarter of
all points need a search in the same round (tight, well-separated clusters:
every point of a cluster needs one as soon as the cluster is one component),
*every* point is searched in one symmetric pass (block ``(I, J)`` serves the
rows of both): half the arithmetic of searching them one block at a time, and
their slots then settle almost every later round without a search.

With *group maxima* (each point's largest inner product with every group of
consecutive rows, kept by the neighbour screen from the blocks it computes
anyway, rows in cell order: :mod:`.order`), a search meets only the groups whose
maximum could beat the point's slots, and that replaces the symmetric pass.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import numba
from numba import njit, prange
from threadpoolctl import threadpool_limits

from cluster_workers.engines.neighbours import BLOCK_COLS, CHUNK, LANES, _span_max, exact_distances

SEARCH_ROWS = 1024  # rows of one ordered search block (SEARCH_ROWS x n float32)
PAIR_ROWS = 2048  # rows of one symmetric search block (BLOCK_COLS wide)
SLOTS = 8  # lightest edges into distinct components kept per searched point
SYMMETRIC_SHARE = 0.25  # search in one symmetric pass when this share of all points needs a search
SCREEN_SLACK = 1e-5  # float32 GEMM error on a squared distance of unit vectors, with room to spare
LEADING_GROUPS = 16  # groups a point meets first (its largest maxima), to fill its slots before bounding the rest
GROUP_ROWS = 128  # points searched together against the groups any of them needs
GROUP_STEP = 16  # groups met at once before the points' bounds are tightened again
CLOSED = -2  # slot_c of a slot closed because fewer than SLOTS other components exist
SIM_SLACK = 1e-5  # float32 error on an inner product of unit vectors (GEMM or a plain dot), with room to spare
NO_GROUPS = (np.empty(0, dtype=np.int64), 0)  # group_comp, group: no group structure known


@njit(cache=True)
def _find(parent: np.ndarray, a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:
        parent[a], a = root, parent[a]
    return root


@njit(cache=True)
def _roots(parent: np.ndarray) -> np.ndarray:
    out = np.empty(parent.size, dtype=np.int64)
    for a in range(parent.size):
        out[a] = _find(parent, a)
    return out


@njit(cache=True, inline="always")
def _consider(best_w: np.ndarray, best_b: np.ndarray, a: int, w: float, b: int) -> None:
    if w < best_w[a] or (w == best_w[a] and b < best_b[a]):
        best_w[a] = w
        best_b[a] = b


@njit(cache=True)
def _best_known(
    idx: np.ndarray, mrd: np.ndarray, slot_w: np.ndarray, slot_b: np.ndarray, comp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the lightest known edge (neighbour lists and slots, either direction) to another component."""
    n, k = idx.shape
    best_w = np.full(n, np.inf)
    best_b = np.full(n, -1, dtype=np.int64)
    for a in range(n):
        ca = comp[a]
        for j in range(k):
            b = idx[a, j]
            if comp[b] != ca:
                _consider(best_w, best_b, a, mrd[a, j], b)
                _consider(best_w, best_b, b, mrd[a, j], a)
        for t in range(slot_b.shape[1]):
            b = slot_b[a, t]
            if b >= 0 and comp[b] != ca:
                _consider(best_w, best_b, a, slot_w[a, t], b)
                _consider(best_w, best_b, b, slot_w[a, t], a)
    return best_w, best_b


@njit(cache=True, nogil=True, inline="always")
def _slot_of(slot_c: np.ndarray, a: int, c: int) -> int:
    """Index of a's slot for component ``c``, -1 if it has none."""
    for t in range(slot_c.shape[1]):
        if slot_c[a, t] == c:
            return t
    return -1


@njit(cache=True, nogil=True, inline="always")
def _limit(slot_w: np.ndarray, slot_c: np.ndarray, a: int, c: int, ceiling: float) -> float:
    """What an edge from ``a`` into component ``c`` must weigh less than to change a's slots.

    ``ceiling``: the heaviest slot (or a bound on it); lower when ``c`` already
    holds a slot: only a lighter edge than that one changes it.
    """
    t = _slot_of(slot_c, a, c) if c >= 0 else -1
    return min(ceiling, slot_w[a, t]) if t >= 0 else ceiling


@njit(cache=True, nogil=True, inline="always")
def _offer(slot_w: np.ndarray, slot_b: np.ndarray, slot_c: np.ndarray, a: int, w: float, b: int, c: int) -> float:
    """Offer edge ``(a, b)`` (weight ``w``, into component ``c``) to a's slots; returns a's new threshold."""
    slots = slot_w.shape[1]
    j = _slot_of(slot_c, a, c)
    if j < 0:  # a new component: it takes the heaviest slot (an empty one weighs inf)
        j = 0
        for t in range(1, slots):
            if slot_w[a, t] > slot_w[a, j]:
                j = t
        if w < slot_w[a, j]:
            slot_c[a, j] = c
            slot_w[a, j] = w
            slot_b[a, j] = b
    elif w < slot_w[a, j]:
        slot_w[a, j] = w
        slot_b[a, j] = b
    top = slot_w[a, 0]
    for t in range(1, slots):
        top = max(top, slot_w[a, t])
    return top


@njit(cache=True, nogil=True, inline="always")
def _sim_floor(threshold: float) -> float:
    """Inner products at or below this give a distance of at least ``threshold`` (unit vectors)."""
    return 1.0 - 0.5 * threshold * threshold if threshold < 2.0 else -np.inf


@njit(cache=True, nogil=True, inline="always")
def _weight(s: float, ka: float, kb: float) -> float:
    d2 = 2.0 - 2.0 * np.float64(s)
    return max(ka, kb, np.sqrt(d2) if d2 > 0.0 else 0.0)


def _offer_rows_body(sims, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group) -> None:  # type: ignore[no-untyped-def]
    """Offer ``sims[i, j]`` (point ``rows[i]`` to ``cols[j]``) to the slots of ``rows[i]``.

    With ``group`` (``group_comp``: see :func:`_group_components`), a chunk of
    columns inside one group wholly in one component is skipped at once when
    that is a's own component, or when it holds a's slot and cannot beat it.
    """
    n_cols = sims.shape[1]
    for i in prange(sims.shape[0]):
        a = rows[i]
        ca, ka = comp[a], core[a]
        top = slot_w[a].max()
        if ka >= top:
            continue
        floor = _sim_floor(top)
        lanes = np.empty(LANES, dtype=sims.dtype)
        for start in range(0, n_cols, CHUNK):
            stop = min(n_cols, start + CHUNK)
            chunk_floor = floor
            if group and cols[start] // group == cols[stop - 1] // group:
                c = group_comp[cols[start] // group]
                if c == ca:
                    continue
                limit = _limit(slot_w, slot_c, a, c, top)
                if ka >= limit:
                    continue
                chunk_floor = _sim_floor(limit)
            if _span_max(sims[i, start:stop], lanes) <= chunk_floor:
                continue
            for j in range(start, stop):
                b = cols[j]
                if sims[i, j] <= floor or comp[b] == ca or core[b] >= top:
                    continue
                w = _weight(sims[i, j], ka, core[b])
                if w < top:
                    top = _offer(slot_w, slot_b, slot_c, a, w, b, comp[b])
                    if ka >= top:
                        break
                    floor = _sim_floor(top)


_offer_rows = njit(parallel=True, cache=True, nogil=True)(_offer_rows_body)
_offer_rows_serial = njit(cache=True, nogil=True)(_offer_rows_body)  # for many small blocks, one per thread


@njit(parallel=True, cache=True, nogil=True)
def _offer_columns(sims, rows, cols, core, comp, slot_w, slot_b, slot_c) -> None:  # type: ignore[no-untyped-def]
    """Offer ``sims[i, j]`` to the slots of ``cols[j]`` (the transposed direction, no copy; tiles of columns in parallel)."""
    n_rows, n_cols = sims.shape
    n_tiles = (n_cols + CHUNK - 1) // CHUNK
    for t in prange(n_tiles):
        start = t * CHUNK
        stop = min(n_cols, start + CHUNK)
        tops = np.empty(stop - start)
        floors = np.empty(stop - start)
        for j in range(start, stop):
            tops[j - start] = slot_w[cols[j]].max()
            floors[j - start] = _sim_floor(tops[j - start])
        lowest = floors.min()
        lanes = np.empty(LANES, dtype=sims.dtype)
        for i in range(n_rows):
            if _span_max(sims[i, start:stop], lanes) <= lowest:
                continue
            a = rows[i]
            ca, ka = comp[a], core[a]
            for j in range(start, stop):
                b = cols[j]
                top = tops[j - start]
                if sims[i, j] <= floors[j - start] or comp[b] == ca or ka >= top:
                    continue
                w = _weight(sims[i, j], core[b], ka)
                if w < top:
                    tops[j - start] = _offer(slot_w, slot_b, slot_c, b, w, a, ca)
                    floors[j - start] = _sim_floor(tops[j - start])
            lowest = floors.min()


@njit(cache=True)
def _leading_groups(points, maxima, group_comp, comp, count):  # type: ignore[no-untyped-def]
    """Groups that are among some point's ``count`` largest maxima (groups wholly inside its component left out)."""
    n_groups = maxima.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    best = np.empty(count, dtype=np.int64)
    for a in points:
        ca = comp[a]
        row = maxima[a]
        m = 0
        for g in range(n_groups):
            if group_comp[g] == ca:
                continue
            if m < count:
                best[m] = g
                m += 1
            else:
                low = 0
                for t in range(1, count):
                    if row[best[t]] < row[best[low]]:
                        low = t
                if row[g] > row[best[low]]:
                    best[low] = g
        for t in range(m):
            chosen[best[t]] = True
    return chosen


@njit(cache=True)
def _reachable_groups(points, maxima, group_comp, group_core, core, comp, slot_w, slot_b, slot_c, done):  # type: ignore[no-untyped-def]
    """Groups not in ``done`` that could still hold an edge into one of some point's slots.

    A point's heaviest slot is bounded from above by its slots and by the
    groups wholly inside other components (the group's best member is as close
    as its maximum says, its core at most the group's largest): the ``SLOTS``
    lightest such bounds over distinct components. A group whose maximum cannot
    beat that bound holds no edge for the slots, nor does a group wholly inside
    a component that already has a slot, unless it could beat that slot
    (an edge weighs at least the distance and the point's core).
    """
    n_groups = maxima.shape[1]
    slots = slot_w.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    ub_w = np.empty((1, slots))
    ub_b = np.empty((1, slots), dtype=np.int64)
    ub_c = np.empty((1, slots), dtype=np.int64)
    for a in points:
        ca, ka = comp[a], core[a]
        row = maxima[a]
        ub_w[0], ub_b[0], ub_c[0] = slot_w[a], slot_b[a], slot_c[a]
        ceiling = ub_w[0].max()
        for g in range(n_groups):
            c = group_comp[g]
            if c >= 0 and c != ca:
                w = _weight(row[g] - SIM_SLACK, ka, group_core[g])
                if w < ceiling:
                    ceiling = _offer(ub_w, ub_b, ub_c, 0, w, -1, c)
        if ka >= ceiling:
            continue
        floor = _sim_floor(ceiling)
        for g in range(n_groups):
            if done[g] or chosen[g] or row[g] + SIM_SLACK <= floor:
                continue
            c = group_comp[g]
            if c == ca:
                continue
            limit = _limit(slot_w, slot_c, a, c, ceiling)  # c < 0: the group spans components, only the ceiling bounds it
            if ka >= limit or row[g] + SIM_SLACK <= _sim_floor(limit):  # an edge weighs at least a's core and the distance
                continue
            chosen[g] = True
    return chosen


def _group_components(comp: np.ndarray, group: int) -> np.ndarray:
    """Per group of ``group`` consecutive points: their component if they share one, else -1."""
    n = comp.size
    starts = np.arange(0, n, group)
    low, high = np.minimum.reduceat(comp, starts), np.maximum.reduceat(comp, starts)
    return np.where(low == high, low, -1)


def _component_minimum(comp: np.ndarray, weights: np.ndarray, n_roots: int) -> np.ndarray:
    """Index of each component's lightest entry (ties: smallest index), -1 if all inf."""
    order = np.lexsort((np.arange(weights.size), weights, comp))
    first = np.full(n_roots, -1, dtype=np.int64)
    comp_sorted = comp[order]
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    first[comp_sorted[starts]] = order[starts]
    first[(first >= 0) & ~np.isfinite(weights[np.maximum(first, 0)])] = -1
    return first


class _Search:
    """Searches of points against every point outside their component, remembered in slots."""

    def __init__(self, x: np.ndarray, core: np.ndarray, reach: np.ndarray, on_block: Callable[[], object] | None) -> None:
        n = x.shape[0]
        self.x, self.core, self.reach, self.on_block = x, core, reach, on_block
        self.bound = reach.copy()  # no outside point missing from a's neighbour list and slots is lighter
        self.slot_w = np.full((n, SLOTS), np.inf)
        self.slot_b = np.full((n, SLOTS), -1, dtype=np.int64)
        self.slot_c = np.full((n, SLOTS), -1, dtype=np.int64)
        self.searched = 0
        self.pairs = 0  # point pairs computed by the searches

    def _tick(self) -> None:
        if self.on_block is not None:
            self.on_block()

    def _start(self, points: np.ndarray, n_comp: int) -> None:
        """Empty the slots of ``points``; with fewer than ``SLOTS`` other components, the spare slots are closed."""
        self.slot_w[points] = np.inf
        self.slot_b[points] = -1
        self.slot_c[points] = -1
        spare = max(0, self.slot_w.shape[1] - (n_comp - 1))
        self.slot_w[points[:, None], np.arange(spare)] = -np.inf  # never the heaviest: it takes no edge
        self.slot_c[points[:, None], np.arange(spare)] = CLOSED
        self.searched += int(points.size)

    def _finish(self, points: np.ndarray) -> None:
        """Slots of freshly searched ``points`` recomputed in float64; their bounds raised to the heaviest slot."""
        screened = self.slot_w[points]
        ids = self.slot_b[points]
        found = ids >= 0
        exact = exact_distances(self.x, points, np.where(found, ids, points[:, None]))
        weights = np.maximum(np.maximum(self.core[points][:, None], self.core[np.maximum(ids, 0)]), exact)
        self.slot_w[points] = np.where(found, weights, np.inf)
        closed = self.slot_c[points] == CLOSED
        # every slot filled: no edge left out is lighter than the heaviest slot; with closed slots, every other
        # component has its slot, and so will every later one (a union of them): nothing left out can matter
        heaviest = np.where(found.all(axis=1), screened.max(axis=1) - SCREEN_SLACK, np.inf)
        heaviest[~(found | closed).all(axis=1)] = -np.inf
        self.bound[points] = np.maximum(self.reach[points], heaviest)

    def block(self, points: np.ndarray, comp: np.ndarray) -> None:
        """Search ``points`` against every point."""
        self._tick()
        self._start(points, int(comp.max()) + 1)
        sims = self.x[points] @ self.x.T
        self.pairs += points.size * self.x.shape[0]
        _offer_rows(sims, points, np.arange(self.x.shape[0]), self.core, comp, self.slot_w, self.slot_b, self.slot_c, *NO_GROUPS)
        self._finish(points)

    def by_group_maxima(self, points: np.ndarray, comp: np.ndarray, maxima: np.ndarray, group: int) -> None:
        """Search ``points`` against only the groups (``group`` consecutive points) that could hold a slot.

        ``maxima[a, g]``: a's largest inner product with group ``g``, from the
        neighbour screen. ``GROUP_ROWS`` consecutive points at a time meet
        first their ``LEADING_GROUPS`` best groups, then every group whose
        maximum could still beat one of their slots (:func:`_reachable_groups`),
        ``GROUP_STEP`` groups at a time, best first, each step tightening the bounds.
        """
        self._start(points, int(comp.max()) + 1)
        group_comp = _group_components(comp, group)
        group_core = np.maximum.reduceat(self.core, np.arange(0, self.core.size, group))
        ordered = np.sort(points)
        batches = [ordered[s : s + GROUP_ROWS] for s in range(0, ordered.size, GROUP_ROWS)]
        self._tick()  # not inside: a thread-count change there would be undone on leaving the BLAS limit
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
        done = _leading_groups(rows, maxima, group_comp, comp, LEADING_GROUPS)
        pairs = self._offer_groups(xr, rows, done, group, comp, group_comp)
        while True:  # the most promising of the groups still reachable, until none is
            rest = np.flatnonzero(_reachable_groups(
                rows, maxima, group_comp, group_core, self.core, comp, self.slot_w, self.slot_b, self.slot_c, done
            ))  # fmt: skip
            if not rest.size:
                return pairs
            if rest.size > GROUP_STEP:
                rest = rest[np.argsort(-maxima[rows][:, rest].max(axis=0), kind="stable")[:GROUP_STEP]]
            step = np.zeros_like(done)
            step[rest] = True
            pairs += self._offer_groups(xr, rows, step, group, comp, group_comp)
            done |= step

    def _offer_groups(
        self, xr: np.ndarray, rows: np.ndarray, chosen: np.ndarray, group: int, comp: np.ndarray, group_comp: np.ndarray
    ) -> int:
        """Offer every pair of ``rows`` with a member of a ``chosen`` group (GEMMs over runs of them); returns the pairs."""
        n = self.x.shape[0]
        edges = np.flatnonzero(np.diff(np.r_[0, chosen.astype(np.int8), 0]))
        pairs = 0
        for g0, g1 in zip(edges[::2], edges[1::2]):
            for lo in range(g0 * group, min(n, g1 * group), BLOCK_COLS):
                hi = min(n, g1 * group, lo + BLOCK_COLS)
                pairs += rows.size * (hi - lo)
                sims = xr @ self.x[lo:hi].T
                _offer_rows_serial(
                    sims, rows, np.arange(lo, hi), self.core, comp, self.slot_w, self.slot_b, self.slot_c, group_comp, group
                )
        return pairs

    def symmetric(self, points: np.ndarray, comp: np.ndarray) -> None:
        """Search ``points`` against every point; pairs inside ``points`` are computed once for both ends.

        As the neighbour screen: each chunk of rows meets itself, then the later
        points in wide blocks that serve rows and columns, then the other points.
        """
        n = self.x.shape[0]
        self._start(points, int(comp.max()) + 1)
        points = np.sort(points)
        self.pairs += points.size * n - points.size * (points.size - 1) // 2
        others = np.setdiff1d(np.arange(n), points, assume_unique=True)
        args = (self.core, comp, self.slot_w, self.slot_b, self.slot_c)
        for s in range(0, points.size, PAIR_ROWS):
            rows = points[s : s + PAIR_ROWS]
            xr = self.x[rows]
            self._tick()
            _offer_rows(xr @ xr.T, rows, rows, *args, *NO_GROUPS)
            for c in range(s + PAIR_ROWS, points.size, BLOCK_COLS):
                self._tick()
                cols = points[c : c + BLOCK_COLS]
                sims = xr @ self.x[cols].T
                _offer_rows(sims, rows, cols, *args, *NO_GROUPS)
                _offer_columns(sims, rows, cols, *args)
            for c in range(0, others.size, BLOCK_COLS):
                self._tick()
                cols = others[c : c + BLOCK_COLS]
                _offer_rows(xr @ self.x[cols].T, rows, cols, *args, *NO_GROUPS)
        self._finish(points)


def mutual_reachability_mst(
    data: np.ndarray,
    idx: np.ndarray,
    dist: np.ndarray,
    core: np.ndarray,
    exact: bool = False,
    on_block: Callable[[], object] | None = None,
    maxima: np.ndarray | None = None,
    group: int = 0,
) -> tuple[np.ndarray, dict]:
    """MST edges ``(a, b, weight)`` (n - 1 rows, sorted by weight) and search statistics.

    ``idx``/``dist``: each point's exact nearest neighbours (sorted, float64);
    ``core``: core distances (float64). ``exact=False`` (the default path):
    a component takes its lightest known edge when it has one, and only
    components the graph leaves apart are searched -- the MST of the kNN graph,
    its pieces joined by their true lightest edges. ``exact=True``: every
    component's lightest edge is proven lightest over *all* pairs.
    """
    x = np.ascontiguousarray(data, dtype=np.float32)
    n = x.shape[0]
    mrd = np.maximum(np.maximum(core[:, None], core[idx]), dist)
    search = _Search(x, core, np.maximum(core, dist[:, -1]), on_block)
    bound = search.bound
    parent = np.arange(n, dtype=np.int64)
    edges: list[np.ndarray] = []
    stats = {"rounds": 0, "searched_points": 0, "joined_components": 0, "symmetric_searches": 0, "group_searches": 0}
    n_edges = 0
    while n_edges < n - 1:
        stats["rounds"] += 1
        roots = _roots(parent)
        _, comp = np.unique(roots, return_inverse=True)
        n_comp = int(comp.max()) + 1
        best_w, best_b = _best_known(idx, mrd, search.slot_w, search.slot_b, comp)
        settled = best_w <= bound if exact else np.isfinite(best_w)
        known = np.where(settled, best_w, np.inf)
        first = _component_minimum(comp, known, n_comp)
        comp_best = np.where(first >= 0, known[np.maximum(first, 0)], np.inf)
        sizes = np.bincount(comp, minlength=n_comp)
        largest = int(np.argmax(sizes))
        # points that could still hold a lighter edge than their component's best known one
        if exact:
            todo = np.flatnonzero(~settled & (bound < comp_best[comp]) & (comp != largest))
        else:  # only the pieces the kNN graph leaves apart
            apart = ~np.isfinite(comp_best)
            apart[largest] = False
            stats["joined_components"] += int(apart.sum())
            todo = np.flatnonzero(apart[comp])

        def absorb(block: np.ndarray) -> None:
            """Searched points' lightest slots become their (exact) best edges; components' bests follow."""
            nonlocal first, comp_best
            j = np.argmin(search.slot_w[block], axis=1)
            w, b = search.slot_w[block, j], search.slot_b[block, j]
            better = w < best_w[block]
            best_w[block[better]], best_b[block[better]] = w[better], b[better]
            known[block] = best_w[block]
            first = _component_minimum(comp, known, n_comp)
            comp_best = np.where(first >= 0, known[np.maximum(first, 0)], np.inf)

        many = todo.size >= max(SYMMETRIC_SHARE * n, 2 * PAIR_ROWS)
        if many and maxima is None:
            # most points need a search: search them all at once, symmetrically; their slots then serve later rounds
            stats["symmetric_searches"] += 1
            everyone = np.arange(n)
            search.symmetric(everyone, comp)
            absorb(everyone)
            todo = todo[:0]
        elif many:  # the same, each against only the groups that could hold its slots
            stats["group_searches"] += 1
            search.by_group_maxima(todo, comp, maxima, group)
            absorb(todo)
            todo = todo[:0]
        todo = todo[np.argsort(bound[todo], kind="stable")]
        while todo.size:  # in order of bound, until no unsearched point could beat its component's best
            block, todo = todo[:SEARCH_ROWS], todo[SEARCH_ROWS:]
            if maxima is None:
                search.block(block, comp)
            else:
                search.by_group_maxima(block, comp, maxima, group)
            absorb(block)
            todo = todo[bound[todo] < comp_best[comp[todo]] + SCREEN_SLACK]
        # the largest component's own known edge counts only if nothing unsearched could beat it
        unsure = ~settled & (comp == largest)
        if exact and unsure.any() and comp_best[largest] > bound[unsure].min():
            first[largest] = -1
        chosen = first[first >= 0]
        chosen = chosen[np.lexsort((chosen, known[chosen]))]
        round_edges = []
        for a in chosen:
            ra, rb = _find(parent, int(a)), _find(parent, int(best_b[a]))
            if ra != rb:
                parent[ra] = rb
                round_edges.append((a, best_b[a], known[a]))
        if not round_edges:
            raise RuntimeError("minimum spanning tree made no progress (a component found no outgoing edge)")
        edges.append(np.array(round_edges, dtype=np.float64))
        n_edges += len(round_edges)
    stats["searched_points"] = search.searched
    stats["searched_pair_share"] = round(search.pairs / max(1.0, n * (n - 1) / 2), 4)
    tree = np.vstack(edges) if edges else np.empty((0, 3))
    return tree[np.argsort(tree[:, 2], kind="stable")], stats
