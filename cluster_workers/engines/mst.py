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

Layers: this module runs the rounds (components, known edges, who must be
searched, the join); :mod:`.mst_search` does the searches; :mod:`.mst_slots`
holds their numba kernels.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cluster_workers.engines.mst_search import MSTTuning, SlotSearch
from cluster_workers.engines.mst_slots import best_known, component_roots, find_root
from cluster_workers.engines.neighbours import NeighbourGraph

__all__ = ["BoruvkaMST", "MSTTuning", "mutual_reachability_mst"]


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
