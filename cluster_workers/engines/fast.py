"""The fast engine: HDBSCAN's own answer, computed with far less work than the reference.

Steps (rows of ``data`` are L2-normalised):

0. **Copies collapsed** (:mod:`.duplicates`): each distinct vector clustered
   once, with its count as a weight.
1. **Row order** (:mod:`.order`): rows of one k-means cell next to each other,
   so that groups of consecutive rows are compact. ``data`` is permuted in
   place (no second copy of the vectors) and restored before returning.
2. **Certified neighbours** (:mod:`.neighbours`): float32 GEMM screen, float64
   rerank, every core distance proven against the screen's error bound
   (:mod:`.bounds`) or recomputed exactly. The same blocks give each row's
   largest inner product with every group of rows (*group maxima*).
3. **The exact mutual-reachability MST** (:mod:`.mst`) of the distinct rows,
   expanded to every row (:func:`expand_tree`).
4. **Condensed tree, selection, labels, probabilities** (:mod:`.tree`): the
   ``hdbscan`` package's code, version-checked.
5. **Fidelity** (:mod:`.fidelity`): 1,000 sampled core distances checked again
   against an independent brute force.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

from cluster_workers.engines import Clustering, HDBSCANParams
from cluster_workers.engines.cores import CoreDistances, prediction_cores
from cluster_workers.engines.duplicates import distinct_rows
from cluster_workers.engines.fidelity import core_distance_fidelity
from cluster_workers.engines.mst import MSTTuning, mutual_reachability_mst
from cluster_workers.engines.neighbours import NeighbourGraph, ScreenTuning, group_size, nearest
from cluster_workers.engines.order import cell_order
from cluster_workers.engines.tree import cut_tree


@dataclass(frozen=True)
class FastOptions:
    """How the fast engine works (every option gives the same answer but ``exact_mst=False`` and ``certify=False``)."""

    exact_mst: bool = True  # prove every MST edge lightest over all pairs; False: the kNN graph's MST, pieces joined exactly
    certify: bool = True  # recompute every core distance the screen cannot prove (False only to show what it does)
    collapse_copies: bool = True  # cluster each distinct vector once
    list_extra: int = 16  # neighbours listed beyond min_samples + 1: they settle MST edges without a search
    list_cap: int = 128  # neighbours listed per point at most: memory that does not grow with min_samples
    group_maxima_bytes: int = 512 * 2**20  # per-point group maxima kept from the screen for the MST searches
    screen: ScreenTuning = field(default_factory=ScreenTuning)
    mst: MSTTuning = field(default_factory=MSTTuning)

    def list_length(self, min_samples: int) -> int:
        return min(min_samples + 1 + self.list_extra, max(self.list_cap, 2))


# Reads in one piece: the engine's steps in order (the module docstring), each a call.
def cluster(
    data: np.ndarray,
    params: HDBSCANParams,
    fidelity: bool = True,
    on_block: Callable[[], object] | None = None,
    options: FastOptions = FastOptions(),
) -> Clustering:
    """HDBSCAN of the rows of ``data`` (L2-normalised), with probabilities and how it ran in ``info``.

    ``on_block`` is called between blocks of work (the worker adjusts its thread count there).
    ``data`` is reordered in place while the engine runs and restored before it returns.
    """
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 vectors to cluster, got {n}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    x_all = (
        data
        if data.dtype == np.float32 and data.flags.c_contiguous and data.flags.writeable
        else np.array(data, dtype=np.float32)
    )
    if options.collapse_copies:
        first, inverse, counts = distinct_rows(x_all)
    else:
        first, inverse, counts = np.arange(n), np.arange(n), np.ones(n, dtype=np.int64)
    u = first.size
    timings["copies_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    group = group_size(u, options.group_maxima_bytes, options.screen.block_rows) if u > 1 else 0
    order = cell_order(x_all, first) if group else np.arange(u)
    placed = first[order]  # row i of the engine's view is data row placed[i]
    perm = np.concatenate([placed, np.setdiff1d(np.arange(n), placed, assume_unique=True)])
    permute_rows(x_all, perm)
    try:
        x = x_all[:u]
        weights = counts[order]
        timings["order_s"] = time.perf_counter() - t0
        tree, core, prediction, info = _cluster_distinct(x, weights, params, group, on_block, options, timings)
    finally:
        restore_rows(x_all, perm)
    tree[:, :2] = placed[tree[:, :2].astype(np.int64)]
    core_by_distinct = np.empty(u)
    core_by_distinct[order] = core  # engine row i is distinct row order[i]
    prediction_by_distinct = np.empty(u)
    prediction_by_distinct[order] = prediction
    full_tree = expand_tree(tree, first, inverse, core_by_distinct)
    t0 = time.perf_counter()
    cut = cut_tree(full_tree, params)
    timings["tree_s"] = time.perf_counter() - t0
    info["copies"] = int(n - u)
    if fidelity:
        t0 = time.perf_counter()
        info["fidelity"] = core_distance_fidelity(x_all, core_by_distinct[inverse], params.min_samples)
        timings["fidelity_s"] = time.perf_counter() - t0
    info["timings"] = {k: round(v, 3) for k, v in timings.items()}
    cores = CoreDistances(core_by_distinct[inverse], prediction_by_distinct[inverse])
    return Clustering(cut.labels, cut.probabilities, info, tree=full_tree, outlier_scores=cut.outlier_scores, cores=cores)


def _cluster_distinct(x, weights, params, group, on_block, options, timings):  # type: ignore[no-untyped-def]
    """MST (rows of ``x``), both core distances (:mod:`.cores`) and engine info for the distinct rows in cell order."""
    u = x.shape[0]
    info: dict = {"engine": "fast", "mst": "exact Borůvka" if options.exact_mst else "kNN-graph Borůvka, pieces joined exactly"}
    if u == 1:  # every row the same vector: distance 0 everywhere
        timings["neighbours_s"] = timings["mst_s"] = 0.0
        info["certificate"] = {"rows": 1, "proven_by_screen": 1, "recomputed": 0, "certified": 1}
        return np.empty((0, 3)), np.zeros(1), np.zeros(1), info
    t0 = time.perf_counter()
    maxima = np.full((u, -(-u // group)), -np.inf, dtype=np.float32) if group else None
    graph: NeighbourGraph = nearest(
        x, params.min_samples, options.list_length(params.min_samples), weights=weights, maxima=maxima,
        group=group, on_block=on_block, certify=options.certify, tuning=options.screen,
    )  # fmt: skip
    timings["neighbours_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    err = graph.stats["similarity_error"]  # the screen's bound, computed once over the rows
    tree, stats = mutual_reachability_mst(
        x, graph, err, exact=options.exact_mst, maxima=maxima, group=group, on_block=on_block, tuning=options.mst
    )
    timings["mst_s"] = time.perf_counter() - t0
    info.update({
        "neighbour_path": f"certified ({graph.stats['screen']} float32 GEMM screen, float64 rerank and recomputation)",
        "neighbours": int(graph.ids.shape[1]),
        "certificate": graph.stats,
        "mst_joined_components": stats["joined_components"],
        "mst_searched_points": stats["searched_points"],
        "mst_rounds": stats["rounds"],
        "mst_searched_pair_share": stats["searched_pair_share"],
    })  # fmt: skip
    return tree, graph.core, prediction_cores(graph, weights, params.min_samples), info


def expand_tree(tree: np.ndarray, first: np.ndarray, inverse: np.ndarray, core: np.ndarray) -> np.ndarray:
    """The MST of every row from the MST of the distinct rows (``core``: per distinct row).

    Copies of one vector are at distance 0, so their mutual reachability is
    their core distance, and every edge leaving them weighs at least that:
    some minimum spanning tree joins each vector's copies first, by a star of
    edges from its first copy, and is otherwise the distinct rows' tree. The
    star edges come before equal-weight tree edges (copies never split into
    two clusters), as the ``hdbscan`` package's Prim tree orders them.
    """
    n = inverse.size
    copies = np.setdiff1d(np.arange(n), first, assume_unique=True)
    owner = inverse[copies]
    stars = np.column_stack([first[owner], copies, core[owner]]).astype(np.float64)
    full = np.vstack([stars, tree]) if tree.size else stars
    return full[np.argsort(full[:, 2], kind="stable")]


@njit(cache=True)
def _follow_cycles(data: np.ndarray, perm: np.ndarray) -> None:
    """``data[i] <- data[perm[i]]`` for every ``i``, one cycle of the permutation at a time."""
    done = np.zeros(perm.size, dtype=np.bool_)
    spare = np.empty(data.shape[1], dtype=data.dtype)
    for start in range(perm.size):
        if done[start] or perm[start] == start:
            continue
        spare[:] = data[start]
        i = start
        while True:
            done[i] = True
            j = perm[i]
            if j == start:
                data[i] = spare
                break
            data[i] = data[j]
            i = j


def permute_rows(data: np.ndarray, perm: np.ndarray) -> None:
    """``data[:] = data[perm]`` in place (one spare row, not a second copy of the matrix)."""
    _follow_cycles(data, perm)


def restore_rows(data: np.ndarray, perm: np.ndarray) -> None:
    """Undo :func:`permute_rows`."""
    _follow_cycles(data, np.argsort(perm))
