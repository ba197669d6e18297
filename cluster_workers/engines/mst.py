"""The exact minimum spanning tree of the mutual-reachability graph, by Borůvka rounds.

``mrd(a, b) = max(core[a], core[b], d(a, b))``. Each round, every component
(but the largest) finds its lightest outgoing edge *exactly*, and all those
edges join the tree (a union-find drops the one that would close a cycle when
weights tie). An edge found this way is in a minimum spanning tree by the cut
property, so the result is HDBSCAN's tree, not a kNN-graph approximation.

Finding a component's lightest edge cheaply: point ``a``'s exact ``k``-nearest
list gives its best listed edge to another component; any unlisted point ``b``
is at least ``r_a`` (the ``k``-th neighbour distance) away, so
``mrd(a, b) >= max(core[a], r_a)``. Points whose bound is below their
component's best known edge are searched against every point outside the
component (float32 GEMM screen, then the chosen edge recomputed in float64),
in order of their bound, stopping as soon as the bound passes the best edge.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit, prange

from cluster_workers.engines.neighbours import exact_distances

SEARCH_ROWS = 1024  # rows of one search block (SEARCH_ROWS x n float32)
SCREEN_SLACK = 1e-5  # float32 GEMM error on a squared distance of unit vectors, with room to spare


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


@njit(cache=True)
def _best_listed(idx: np.ndarray, mrd: np.ndarray, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the lightest kNN-graph edge (either direction) to another component (inf/-1 if none)."""
    n, k = idx.shape
    best_w = np.full(n, np.inf)
    best_b = np.full(n, -1, dtype=np.int64)
    for a in range(n):
        ca = comp[a]
        for j in range(k):
            b = idx[a, j]
            if comp[b] == ca:
                continue
            w = mrd[a, j]
            if w < best_w[a] or (w == best_w[a] and b < best_b[a]):
                best_w[a] = w
                best_b[a] = b
            if w < best_w[b] or (w == best_w[b] and a < best_b[b]):
                best_w[b] = w
                best_b[b] = a
    return best_w, best_b


@njit(parallel=True, cache=True)
def _best_outside(
    sims: np.ndarray, rows: np.ndarray, core: np.ndarray, comp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``sims`` (rows ``rows`` against every point): the lightest screened mrd edge leaving its component."""
    m, n = sims.shape
    best_w = np.full(m, np.inf)
    best_b = np.full(m, -1, dtype=np.int64)
    for i in prange(m):
        a = rows[i]
        ca = comp[a]
        ka = core[a]
        for b in range(n):
            if comp[b] == ca:
                continue
            d2 = 2.0 - 2.0 * np.float64(sims[i, b])
            d = np.sqrt(d2) if d2 > 0.0 else 0.0
            w = max(ka, core[b], d)
            if w < best_w[i]:
                best_w[i] = w
                best_b[i] = b
    return best_w, best_b


def _component_minimum(comp: np.ndarray, weights: np.ndarray, n_roots: int) -> np.ndarray:
    """Index of each component's lightest entry (ties: smallest index), -1 if all inf."""
    order = np.lexsort((np.arange(weights.size), weights, comp))
    first = np.full(n_roots, -1, dtype=np.int64)
    comp_sorted = comp[order]
    starts = np.flatnonzero(np.r_[True, comp_sorted[1:] != comp_sorted[:-1]])
    first[comp_sorted[starts]] = order[starts]
    first[(first >= 0) & ~np.isfinite(weights[np.maximum(first, 0)])] = -1
    return first


def mutual_reachability_mst(
    data: np.ndarray,
    idx: np.ndarray,
    dist: np.ndarray,
    core: np.ndarray,
    exact: bool = False,
    on_block: Callable[[], object] | None = None,
) -> tuple[np.ndarray, dict]:
    """MST edges ``(a, b, weight)`` (n - 1 rows, sorted by weight) and search statistics.

    ``idx``/``dist``: each point's exact nearest neighbours (sorted, float64);
    ``core``: core distances (float64). ``exact=False`` (the default path):
    a component takes its lightest kNN-graph edge when it has one, and only
    components the graph leaves apart are searched -- the MST of the kNN graph,
    its pieces joined by their true lightest edges. ``exact=True``: every
    component's lightest edge is proven lightest over *all* pairs.
    """
    x = np.ascontiguousarray(data, dtype=np.float32)
    n = x.shape[0]
    mrd = np.maximum(np.maximum(core[:, None], core[idx]), dist)
    reach = np.maximum(core, dist[:, -1])  # no unlisted edge of a is lighter than this
    parent = np.arange(n, dtype=np.int64)
    edges: list[np.ndarray] = []
    stats = {"rounds": 0, "searched_points": 0, "joined_components": 0}
    n_edges = 0
    while n_edges < n - 1:
        stats["rounds"] += 1
        roots = _roots(parent)
        _, comp = np.unique(roots, return_inverse=True)
        n_comp = int(comp.max()) + 1
        best_w, best_b = _best_listed(idx, mrd, comp)
        settled = best_w <= reach if exact else np.isfinite(best_w)
        known = np.where(settled, best_w, np.inf)
        first = _component_minimum(comp, known, n_comp)
        comp_best = np.where(first >= 0, known[np.maximum(first, 0)], np.inf)
        sizes = np.bincount(comp, minlength=n_comp)
        largest = int(np.argmax(sizes))
        # points that could still hold a lighter edge than their component's best known one
        if exact:
            todo = np.flatnonzero(~settled & (reach < comp_best[comp]) & (comp != largest))
        else:  # only the pieces the kNN graph leaves apart
            apart = ~np.isfinite(comp_best)
            apart[largest] = False
            stats["joined_components"] += int(apart.sum())
            todo = np.flatnonzero(apart[comp])
        todo = todo[np.argsort(reach[todo], kind="stable")]
        while todo.size:
            if on_block is not None:
                on_block()
            block, todo = todo[:SEARCH_ROWS], todo[SEARCH_ROWS:]
            sims = x[block] @ x.T
            w, b = _best_outside(sims, block, core, comp)
            stats["searched_points"] += int(block.size)
            # the float32 screen picked b: recompute that edge exactly
            found = b >= 0
            w[found] = np.maximum(np.maximum(core[block[found]], core[b[found]]), exact_distances(x, block[found], b[found][:, None])[:, 0])
            better = w < best_w[block]
            best_w[block[better]], best_b[block[better]] = w[better], b[better]
            known[block] = best_w[block]
            first = _component_minimum(comp, known, n_comp)
            comp_best = np.where(first >= 0, known[np.maximum(first, 0)], np.inf)
            todo = todo[reach[todo] < comp_best[comp[todo]] + SCREEN_SLACK]
        # the largest component's own listed edge counts only if nothing unsearched could beat it
        unsure = ~settled & (comp == largest)
        if exact and unsure.any() and comp_best[largest] > reach[unsure].min():
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
    tree = np.vstack(edges) if edges else np.empty((0, 3))
    return tree[np.argsort(tree[:, 2], kind="stable")], stats
