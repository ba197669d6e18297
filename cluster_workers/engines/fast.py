"""The fast engine: HDBSCAN's own answer, computed with far less work than the reference.

Steps (rows of ``data`` are L2-normalised):

0. **Row order** (:mod:`.order`): rows of one k-means cell next to each other,
   so that groups of consecutive rows are compact (no result depends on it).
1. **Exact neighbours** (:mod:`.neighbours`): every pair screened by symmetric
   float32 GEMM, the best ``k + margin`` per row reranked in float64. ``k =
   min_samples + 1 + GRAPH_EXTRA``: the core distance needs ``min_samples + 1``
   (self included), the rest make the next step cheap. The same blocks give
   each row's largest inner product with every group of rows (*group maxima*,
   at most ``GROUP_MAXIMA_BYTES``).
2. **Core distances** in float64, as the ``hdbscan`` package defines them.
3. **The exact mutual-reachability MST** (:mod:`.mst`): Borůvka rounds, each
   component's lightest edge found exactly (neighbour lists first, a bounded
   search where they cannot decide, against only the groups whose maximum could matter).
4. **Condensed tree, selection, labels, probabilities** (:mod:`.tree`): the
   ``hdbscan`` package's code, version-checked.
5. **Fidelity** (:mod:`.fidelity`): 1,000 sampled core distances against brute force.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from cluster_workers.engines import Clustering, HDBSCANParams
from cluster_workers.engines.fidelity import core_distance_fidelity
from cluster_workers.engines.mst import mutual_reachability_mst
from cluster_workers.engines.neighbours import core_distances, group_size, knn
from cluster_workers.engines.order import cell_order
from cluster_workers.engines.tree import labels_from_mst

GRAPH_EXTRA = 16  # neighbours beyond min_samples + 1: wider lists settle more MST edges without a search
GROUP_MAXIMA_BYTES = 512 * 2**20  # per-point group maxima kept from the neighbour screen for the MST searches
EXACT_MST = True  # prove every MST edge lightest over all pairs; False: the kNN graph's MST with its pieces joined exactly


def cluster(
    data: np.ndarray, params: HDBSCANParams, fidelity: bool = True, on_block: Callable[[], object] | None = None
) -> Clustering:
    """HDBSCAN of the rows of ``data`` (L2-normalised), with probabilities and how it ran in ``info``.

    ``on_block`` is called between blocks of work (the worker adjusts its thread count there).
    """
    n = data.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 vectors to cluster, got {n}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    group = group_size(n, GROUP_MAXIMA_BYTES)
    order = cell_order(np.ascontiguousarray(data, dtype=np.float32)) if group else np.arange(n)
    x = np.ascontiguousarray(data[order], dtype=np.float32) if group else data
    maxima = np.full((n, -(-n // group)), -np.inf, dtype=np.float32) if group else None
    timings["order_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    idx, dist = knn(x, params.min_samples + 1 + GRAPH_EXTRA, on_block=on_block, maxima=maxima, group=group)
    core = core_distances(dist, params.min_samples)
    timings["neighbours_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mst, mst_stats = mutual_reachability_mst(x, idx, dist, core, exact=EXACT_MST, on_block=on_block, maxima=maxima, group=group)
    del maxima, x
    mst[:, :2] = order[mst[:, :2].astype(np.int64)]
    core = core[np.argsort(order)]
    timings["mst_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels, probabilities = labels_from_mst(mst, params)
    timings["tree_s"] = time.perf_counter() - t0
    info: dict = {
        "engine": "fast",
        "neighbour_path": "exact (symmetric float32 GEMM screen, float64 rerank)",
        "neighbours": int(idx.shape[1]),
        "mst": "exact Borůvka" if EXACT_MST else "kNN-graph Borůvka, pieces joined exactly",
        "mst_joined_components": mst_stats["joined_components"],
        "mst_searched_points": mst_stats["searched_points"],
        "mst_rounds": mst_stats["rounds"],
        "mst_searched_pair_share": mst_stats["searched_pair_share"],
    }
    if fidelity:
        t0 = time.perf_counter()
        info["fidelity"] = core_distance_fidelity(data, core, params.min_samples)
        timings["fidelity_s"] = time.perf_counter() - t0
    info["timings"] = {k: round(v, 3) for k, v in timings.items()}
    return Clustering(labels, probabilities, info)
