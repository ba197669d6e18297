"""The exact minimum spanning tree of the mutual-reachability graph, by Borůvka rounds.

``mrd(a, b) = max(core[a], core[b], d(a, b))``. Each round, every component
(but the largest) finds its lightest outgoing edge *exactly*, and all those
edges join the tree (a union-find drops the one that would close a cycle when
weights tie). An edge found this way is in a minimum spanning tree by the cut
property, so the result is HDBSCAN's tree, not a kNN-graph approximation.

Finding a component's lightest edge cheaply: point ``a``'s certified
neighbour list (:mod:`.neighbours`) gives its best listed edge to another
component; any unlisted point is at least ``lower[a]`` away, so its edge
weighs at least ``max(core[a], lower[a])``: a's *bound*. Points whose bound is
below their component's best known edge are *searched* against the points
outside the component: float32 GEMM screens every pair, and a pair is looked
at only when the screen's error bound (:mod:`.bounds`) leaves it a chance;
its weight is then taken in float64 (exactly ``max(core)`` when even the
largest distance the screen allows is below it, else with direct
differences). Every decision is proven, none is assumed.

A search keeps, per point, its lightest edges into ``slots`` distinct
components of that round. Components only grow, so in later rounds a slot
whose component is still outside stays exact, and every other outside point is
at least the heaviest slot away: the point's bound rises to it, and it is
searched again only when merges have used up its slots. When a quarter of all
points need a search in the same round, every point is searched in one
symmetric pass (block ``(I, J)`` serves the rows of both) -- or, with *group
maxima* (each point's largest inner product with every group of consecutive
rows, kept by the neighbour screen), each point only against the groups whose
maximum could beat its slots.

In reading order: the numba slot kernels (per point its lightest edges into
distinct components), the searches built on them (:class:`SlotSearch`), then
the rounds (components, known edges, who must be searched, the join).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numba
import numpy as np
from numba import njit, prange
from threadpoolctl import threadpool_limits

from cluster_workers.engines.bounds import distance_ceiling, distance_floor, similarity_floor
from cluster_workers.engines.kernels import CHUNK, LANES, distance, span_max
from cluster_workers.engines.neighbours import NeighbourGraph

# The numba kernels of the MST search: union-find, and per point its lightest edges into
# ``slots`` distinct components ("slots"), offered from screened blocks under the float32 error bound.
#
# Pure functions of arrays; the search strategies and the Borůvka loop that call them follow.

CLOSED = -2  # slot_c of a slot closed because fewer than `slots` other components exist


@njit(cache=True)
def find_root(parent: np.ndarray, a: int) -> int:
    root = a
    while parent[root] != root:
        root = parent[root]
    while parent[a] != root:
        parent[a], a = root, parent[a]
    return root


@njit(cache=True)
def component_roots(parent: np.ndarray) -> np.ndarray:
    out = np.empty(parent.size, dtype=np.int64)
    for a in range(parent.size):
        out[a] = find_root(parent, a)
    return out


@njit(cache=True, inline="always")
def _consider(best_w: np.ndarray, best_b: np.ndarray, a: int, w: float, b: int) -> None:
    if w < best_w[a] or (w == best_w[a] and b < best_b[a]):
        best_w[a] = w
        best_b[a] = b


@njit(cache=True)
def best_known(
    ids: np.ndarray, dist: np.ndarray, core: np.ndarray, slot_w: np.ndarray, slot_b: np.ndarray, comp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the lightest known edge (neighbour lists and slots, either direction) to another component.

    A listed edge weighs ``max(core[a], core[b], dist)``, computed here rather than kept (``n × L`` less memory).
    """
    n, k = ids.shape
    best_w = np.full(n, np.inf)
    best_b = np.full(n, -1, dtype=np.int64)
    for a in range(n):
        own = comp[a]
        for j in range(k):
            b = ids[a, j]
            if comp[b] != own:
                w = max(core[a], core[b], dist[a, j])
                _consider(best_w, best_b, a, w, b)
                _consider(best_w, best_b, b, w, a)
        for t in range(slot_b.shape[1]):
            b = slot_b[a, t]
            if b >= 0 and comp[b] != own:
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
    """Offer edge ``(a, b)`` (exact weight ``w``, into component ``c``) to a's slots; returns a's heaviest slot."""
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
def _edge_weight(x: np.ndarray, s: float, a: int, b: int, ka: float, kb: float, err: float) -> float:
    """The exact mutual-reachability weight of ``(a, b)`` (screened similarity ``s``): its cores when the
    screen proves the distance below them, else with the distance measured in float64."""
    cores = max(ka, kb)
    if distance_ceiling(s, err) <= cores:
        return cores
    return max(cores, distance(x, a, b))


@njit(cache=True, nogil=True, inline="always")
def _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes) -> None:  # type: ignore[no-untyped-def]
    """Offer ``sims[i, j]`` (point ``rows[i]`` to ``cols[j]``) to the slots of ``rows[i]``.

    A pair is weighed only if the smallest weight its screened value allows
    beats the slot it would change. With ``group`` (``group_comp``: see
    :func:`_group_components`), a chunk of columns inside one group wholly in
    one component is skipped at once when that is a's own component, or when
    it holds a's slot and cannot beat it.
    """
    n_cols = sims.shape[1]
    a = rows[i]
    own, ka = comp[a], core[a]
    top = slot_w[a].max()
    if ka >= top:
        return
    floor = similarity_floor(top, err)
    for start in range(0, n_cols, CHUNK):
        stop = min(n_cols, start + CHUNK)
        chunk_floor = floor
        if group and cols[start] // group == cols[stop - 1] // group:
            c = group_comp[cols[start] // group]
            if c == own:
                continue
            limit = _limit(slot_w, slot_c, a, c, top)
            if ka >= limit:
                continue
            chunk_floor = similarity_floor(limit, err)
        if span_max(sims[i, start:stop], lanes) <= chunk_floor:
            continue
        for j in range(start, stop):
            b = cols[j]
            if sims[i, j] <= floor or comp[b] == own or core[b] >= top:
                continue
            limit = _limit(slot_w, slot_c, a, comp[b], top)
            if max(ka, core[b], distance_floor(sims[i, j], err)) >= limit:
                continue
            w = _edge_weight(x, sims[i, j], a, b, ka, core[b], err)
            if w < limit:
                top = _offer(slot_w, slot_b, slot_c, a, w, b, comp[b])
                if ka >= top:
                    return
                floor = similarity_floor(top, err)


@njit(parallel=True, cache=True, nogil=True)
def offer_rows(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err) -> None:  # type: ignore[no-untyped-def]
    """:func:`_offer_row` for every row of ``sims``, rows in parallel."""
    for i in prange(sims.shape[0]):
        lanes = np.empty(LANES, dtype=sims.dtype)
        _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes)


@njit(cache=True, nogil=True)
def offer_rows_serial(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err) -> None:  # type: ignore[no-untyped-def]
    """:func:`_offer_row` for every row of ``sims`` in one thread (many small blocks side by side)."""
    lanes = np.empty(LANES, dtype=sims.dtype)
    for i in range(sims.shape[0]):
        _offer_row(x, sims, i, rows, cols, core, comp, slot_w, slot_b, slot_c, group_comp, group, err, lanes)


@njit(parallel=True, cache=True, nogil=True)
def offer_columns(x, sims, rows, cols, core, comp, slot_w, slot_b, slot_c, err) -> None:  # type: ignore[no-untyped-def]
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
            floors[j - start] = similarity_floor(tops[j - start], err)
        lowest = floors.min()
        lanes = np.empty(LANES, dtype=sims.dtype)
        for i in range(n_rows):
            if span_max(sims[i, start:stop], lanes) <= lowest:
                continue
            a = rows[i]
            own, ka = comp[a], core[a]
            for j in range(start, stop):
                b = cols[j]
                top = tops[j - start]
                if sims[i, j] <= floors[j - start] or comp[b] == own or ka >= top:
                    continue
                limit = _limit(slot_w, slot_c, b, own, top)
                if max(ka, core[b], distance_floor(sims[i, j], err)) >= limit:
                    continue
                w = _edge_weight(x, sims[i, j], b, a, core[b], ka, err)
                if w < limit:
                    tops[j - start] = _offer(slot_w, slot_b, slot_c, b, w, a, own)
                    floors[j - start] = similarity_floor(tops[j - start], err)
            lowest = floors.min()


@njit(cache=True)
def offer_leading_groups(points, maxima, group_comp, comp, count):  # type: ignore[no-untyped-def]
    """Groups that are among some point's ``count`` largest maxima (groups wholly inside its component left out)."""
    n_groups = maxima.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    best = np.empty(count, dtype=np.int64)
    for a in points:
        own = comp[a]
        row = maxima[a]
        m = 0
        for g in range(n_groups):
            if group_comp[g] == own:
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
def reachable_groups(points, maxima, group_comp, group_core, core, comp, slot_w, slot_b, slot_c, done, err):  # type: ignore[no-untyped-def]
    """Groups not in ``done`` that could still hold an edge into one of some point's slots.

    A point's heaviest slot is bounded from above by its slots and by the
    groups wholly inside other components (the group's best member is at most
    ``distance_ceiling(maximum)`` away, its core at most the group's largest):
    the ``slots`` lightest such bounds over distinct components. A group whose
    maximum cannot beat that bound holds no edge for the slots, nor does a
    group wholly inside a component that already has a slot, unless it could
    beat that slot (an edge weighs at least the distance and the point's core).
    """
    n_groups = maxima.shape[1]
    slots = slot_w.shape[1]
    chosen = np.zeros(n_groups, dtype=np.bool_)
    ub_w = np.empty((1, slots))
    ub_b = np.empty((1, slots), dtype=np.int64)
    ub_c = np.empty((1, slots), dtype=np.int64)
    for a in points:
        own, ka = comp[a], core[a]
        row = maxima[a]
        ub_w[0], ub_b[0], ub_c[0] = slot_w[a], slot_b[a], slot_c[a]
        ceiling = ub_w[0].max()
        for g in range(n_groups):
            c = group_comp[g]
            if c >= 0 and c != own:
                w = max(ka, group_core[g], distance_ceiling(row[g], err))
                if w < ceiling:
                    ceiling = _offer(ub_w, ub_b, ub_c, 0, w, -1, c)
        if ka >= ceiling:
            continue
        floor = similarity_floor(ceiling, err)
        for g in range(n_groups):
            if done[g] or chosen[g] or row[g] <= floor:
                continue
            c = group_comp[g]
            if c == own:
                continue
            limit = _limit(slot_w, slot_c, a, c, ceiling)  # c < 0: the group spans components, only the ceiling bounds it
            if ka >= limit or row[g] <= similarity_floor(limit, err):
                continue
            chosen[g] = True
    return chosen


# The searches of the Borůvka rounds (below): points against the points outside their component.
#
# A search keeps, per point, its lightest edges into ``slots`` distinct
# components of the round, with exact weights: a float32 GEMM screens every pair
# and the numba kernels above take a pair's weight in float64 only
# where the screen's error bound leaves it a chance. Three ways to search: a
# block of points against everyone, every point at once in one symmetric pass,
# or each point only against the groups of rows whose maximum inner product
# could beat its slots (*group maxima*).


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


def _component_minimum(comp: np.ndarray, weights: np.ndarray, n_roots: int) -> np.ndarray:
    """Index of each component's lightest entry (ties: smallest index), -1 if all inf."""
    order = np.lexsort((np.arange(weights.size), weights, comp))
    first = np.full(n_roots, -1, dtype=np.int64)
    comp_sorted = comp[order]
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    first[comp_sorted[starts]] = order[starts]
    first[(first >= 0) & ~np.isfinite(weights[np.maximum(first, 0)])] = -1
    return first


class BoruvkaMST:
    """Borůvka rounds over a certified neighbour graph; :meth:`run` returns the tree.

    Each round: components from the union-find (:meth:`_components`), every
    point's lightest known edge (:meth:`_known_edges`), searches where a
    lighter unknown edge is still possible (:meth:`_search`), then each
    component's proven lightest edge joins the tree (:meth:`_join`).
    """

    def __init__(
        self, x: np.ndarray, graph: NeighbourGraph, err: float, exact: bool = True,
        maxima: np.ndarray | None = None, group: int = 0, on_block: Callable[[], object] | None = None,
        tuning: MSTTuning = MSTTuning(),
    ) -> None:  # fmt: skip
        self.x, self.graph, self.exact, self.maxima, self.group, self.tuning = x, graph, exact, maxima, group, tuning
        n = x.shape[0]
        core = graph.core
        self.search = SlotSearch(x, core, np.maximum(core, graph.lower), err, tuning, on_block)
        self.parent = np.arange(n, dtype=np.int64)
        self.stats = {"rounds": 0, "searched_points": 0, "joined_components": 0, "symmetric_searches": 0, "group_searches": 0}

    def run(self) -> tuple[np.ndarray, dict]:
        """MST edges ``(a, b, weight)`` (n - 1 rows, sorted by weight) and search statistics."""
        n = self.x.shape[0]
        edges: list[np.ndarray] = []
        joined = 0
        while joined < n - 1:
            self.stats["rounds"] += 1
            self._components()
            self._known_edges()
            self._search()
            round_edges = self._join()
            edges.append(round_edges)
            joined += len(round_edges)
        search = self.search
        self.stats["searched_points"] = search.searched
        self.stats["searched_pair_share"] = round(search.pairs / max(1.0, n * (n - 1) / 2), 4)
        tree = np.vstack(edges) if edges else np.empty((0, 3))
        return tree[np.argsort(tree[:, 2], kind="stable")], self.stats

    def _components(self) -> None:
        """This round's component of every point, their count and the largest."""
        _, self.comp = np.unique(component_roots(self.parent), return_inverse=True)
        self.n_comp = int(self.comp.max()) + 1
        self.largest = int(np.argmax(np.bincount(self.comp, minlength=self.n_comp)))

    def _known_edges(self) -> None:
        """Each point's lightest known outgoing edge, which of them are proven, and each component's best."""
        search = self.search
        self.best_w, self.best_b = best_known(
            self.graph.ids, self.graph.dist, self.graph.core, search.slot_w, search.slot_b, self.comp
        )
        self.settled = self.best_w <= search.bound if self.exact else np.isfinite(self.best_w)
        self.known = np.where(self.settled, self.best_w, np.inf)
        self._component_bests()

    def _component_bests(self) -> None:
        self.first = _component_minimum(self.comp, self.known, self.n_comp)
        self.comp_best = np.where(self.first >= 0, self.known[np.maximum(self.first, 0)], np.inf)

    def _absorb(self, points: np.ndarray) -> None:
        """Searched points' lightest slots become their (exact) best edges; components' bests follow."""
        search = self.search
        j = np.argmin(search.slot_w[points], axis=1)
        w, b = search.slot_w[points, j], search.slot_b[points, j]
        better = w < self.best_w[points]
        self.best_w[points[better]], self.best_b[points[better]] = w[better], b[better]
        self.known[points] = self.best_w[points]
        self._component_bests()

    def _candidates(self) -> np.ndarray:
        """Points that could still hold a lighter edge than their component's best known one."""
        comp = self.comp
        if self.exact:
            bound = self.search.bound
            return np.flatnonzero(~self.settled & (bound < self.comp_best[comp]) & (comp != self.largest))
        apart = ~np.isfinite(self.comp_best)  # only the pieces the kNN graph leaves apart
        apart[self.largest] = False
        self.stats["joined_components"] += int(apart.sum())
        return np.flatnonzero(apart[comp])

    def _search(self) -> None:
        """Search the candidates: all at once when they are many, else in order of bound until none could matter."""
        search, comp, bound, tuning = self.search, self.comp, self.search.bound, self.tuning
        todo = self._candidates()
        n = self.x.shape[0]
        if todo.size >= max(tuning.symmetric_share * n, 2 * tuning.pair_rows):
            if self.maxima is None:  # their slots then serve later rounds
                self.stats["symmetric_searches"] += 1
                everyone = np.arange(n)
                search.symmetric(everyone, comp)
                self._absorb(everyone)
            else:
                self.stats["group_searches"] += 1
                search.by_group_maxima(todo, comp, self.maxima, self.group)
                self._absorb(todo)
            return
        todo = todo[np.argsort(bound[todo], kind="stable")]
        while todo.size:
            block, todo = todo[: tuning.search_rows], todo[tuning.search_rows :]
            if self.maxima is None:
                search.block(block, comp)
            else:
                search.by_group_maxima(block, comp, self.maxima, self.group)
            self._absorb(block)
            todo = todo[bound[todo] < self.comp_best[comp[todo]]]

    def _join(self) -> np.ndarray:
        """Each component's proven lightest edge joins the tree (lightest first; a cycle-closing tie is dropped)."""
        first = self.first.copy()
        # the largest component's own known edge counts only if nothing unsearched could beat it
        unsure = ~self.settled & (self.comp == self.largest)
        if self.exact and unsure.any() and self.comp_best[self.largest] > self.search.bound[unsure].min():
            first[self.largest] = -1
        chosen = first[first >= 0]
        chosen = chosen[np.lexsort((chosen, self.known[chosen]))]
        round_edges = []
        for a in chosen:
            ra, rb = find_root(self.parent, int(a)), find_root(self.parent, int(self.best_b[a]))
            if ra != rb:
                self.parent[ra] = rb
                round_edges.append((a, self.best_b[a], self.known[a]))
        if not round_edges:
            raise RuntimeError("minimum spanning tree made no progress (a component found no outgoing edge)")
        return np.array(round_edges, dtype=np.float64)


def mutual_reachability_mst(
    x: np.ndarray, graph: NeighbourGraph, err: float, exact: bool = True, maxima: np.ndarray | None = None,
    group: int = 0, on_block: Callable[[], object] | None = None, tuning: MSTTuning = MSTTuning(),
) -> tuple[np.ndarray, dict]:  # fmt: skip
    """MST edges ``(a, b, weight)`` (n - 1 rows, sorted by weight) of the rows of ``x`` (float32 unit rows).

    ``graph``: certified neighbours and core distances (:func:`.neighbours.nearest`);
    ``err``: the screen's error bound (:func:`.bounds.similarity_error`).
    ``exact=True`` (the default): every component's lightest edge is proven
    lightest over *all* pairs. ``exact=False``: a component takes its lightest
    known edge, and only components the graph leaves apart are searched -- the
    MST of the kNN graph, its pieces joined by their true lightest edges.
    """
    return BoruvkaMST(x, graph, err, exact, maxima, group, on_block, tuning).run()
