"""The fast engine: HDBSCAN semantics, with the expensive part replaced by a k-nearest-neighbour graph.

Steps (rows of ``data`` are L2-normalised, so inner product ranks like euclidean):

1. k-nearest neighbours (``k = min_samples`` + ``EXTRA_NEIGHBOURS``) by blocked
   float32 GEMM: exact up to ``EXACT_LIMIT`` points; above, an inverted-file
   search: spherical k-means cells (faiss), each cell compared exactly with the
   ``PROBES`` cells nearest to it, so all the work stays in BLAS.
2. Core distance of each point = distance to its ``min_samples``-th neighbour
   (the point itself excluded), as the ``hdbscan`` package computes it.
3. Minimum spanning tree of the mutual-reachability graph restricted to the
   kNN edges (scipy). Where that graph falls apart into several components,
   they are joined by the cheapest mutual-reachability edges between samples
   of each component (an upper bound on the exact joining edge).
4. Single-linkage tree, condensed tree, excess-of-mass / leaf selection,
   ``cluster_selection_epsilon`` and ``allow_single_cluster``: the ``hdbscan``
   package's own code, so the selection semantics are the reference's.

Approximations, both measured against the reference (see docs/engines.md):
the MST uses only kNN edges (the standard kNN-graph HDBSCAN approximation), and
above ``EXACT_LIMIT`` the neighbour search is approximate (recall < 1 makes
some core distances slightly too large).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from cluster_workers.engines import HDBSCANParams

EXACT_LIMIT = 25_000  # exact kNN up to here: the cell search loses agreement on diffuse real-text embeddings
CELL_SIZE = 400
PROBES = 16
BLOCK_BYTES = 128 * 2**20  # one similarity block (float32); bounds memory whatever n
EXTRA_NEIGHBOURS = 8
JOIN_SAMPLE_TOTAL = 16384  # all points (exact joins) up to this n
_TINY = 1e-30  # scipy drops zero-weight edges: shift every weight by this, remove it afterwards


def _top_k(x: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int, idx: np.ndarray, sims: np.ndarray) -> None:
    """Exact top-``k`` inner products of ``queries`` among ``candidates`` (row ids), written into idx/sims."""
    cand = x[candidates]
    rows_per_block = max(1, BLOCK_BYTES // (4 * max(1, candidates.size)))
    for start in range(0, queries.size, rows_per_block):
        q = queries[start : start + rows_per_block]
        s = x[q] @ cand.T
        top = np.argpartition(s, s.shape[1] - k, axis=1)[:, -k:]
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        idx[q] = candidates[np.take_along_axis(top, order, axis=1)]
        sims[q] = np.take_along_axis(top_s, order, axis=1)


def knn(
    data: np.ndarray,
    k: int,
    exact_limit: int | None = None,
    cell_size: int | None = None,
    probes: int | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)`` of each row's ``k`` nearest rows (itself included), sorted, euclidean.

    Up to ``exact_limit`` rows: exact, blocked float32 GEMM against every row.
    Above: the rows are split into cells by spherical k-means (faiss, ~``cell_size``
    rows a cell), and each cell's rows are compared exactly (one GEMM) with the
    rows of the ``probes`` cells whose centroids are nearest to its own -- an
    inverted-file search that keeps the work in BLAS.
    """
    exact_limit = EXACT_LIMIT if exact_limit is None else exact_limit
    cell_size = CELL_SIZE if cell_size is None else cell_size
    probes = PROBES if probes is None else probes
    x = np.ascontiguousarray(data, dtype=np.float32)
    n, d = x.shape
    k = min(k, n)
    idx = np.empty((n, k), dtype=np.int64)
    sims = np.empty((n, k), dtype=np.float32)
    if n <= exact_limit:
        _top_k(x, np.arange(n), np.arange(n), k, idx, sims)
    else:
        import faiss

        n_cells = int(np.clip(n // cell_size, 2, 4096))
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, n_cells * 64), replace=False)]
        kmeans = faiss.Kmeans(d, n_cells, niter=12, seed=seed, spherical=True, verbose=False)
        kmeans.train(sample)
        centroids = kmeans.centroids.astype(np.float32)
        assign = np.empty(n, dtype=np.int64)
        for start in range(0, n, 16384):
            assign[start : start + 16384] = np.argmax(x[start : start + 16384] @ centroids.T, axis=1)
        order = np.argsort(assign, kind="stable")
        bounds = np.searchsorted(assign[order], np.arange(n_cells + 1))
        members = [order[bounds[c] : bounds[c + 1]] for c in range(n_cells)]
        sizes = np.diff(bounds)
        near = np.argsort(-(centroids @ centroids.T), axis=1)
        for c in range(n_cells):
            if sizes[c] == 0:
                continue
            p = min(probes, n_cells)
            while sizes[near[c, :p]].sum() < 2 * k and p < n_cells:  # enough candidates for k neighbours
                p = min(n_cells, 2 * p)
            candidates = np.concatenate([members[j] for j in near[c, :p]])
            _top_k(x, members[c], candidates, k, idx, sims)
    dist = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * sims, dtype=np.float32))
    return idx, dist


def core_distances(dist: np.ndarray, min_samples: int) -> np.ndarray:
    """Distance to the ``min_samples``-th neighbour, self excluded (column ``min_samples`` of a sorted kNN row)."""
    return np.ascontiguousarray(dist[:, min(min_samples, dist.shape[1] - 1)], dtype=np.float64)


def _mrd_edges(idx: np.ndarray, dist: np.ndarray, core: np.ndarray) -> coo_matrix:
    n, k = idx.shape
    rows = np.repeat(np.arange(n), k)
    cols = idx.ravel()
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    w = np.maximum(np.maximum(core[rows], core[cols]), dist.ravel()[keep].astype(np.float64))
    return coo_matrix((w + _TINY, (rows, cols)), shape=(n, n))


def _join_components(data: np.ndarray, core: np.ndarray, comp: np.ndarray, n_comp: int, seed: int) -> np.ndarray:
    """MST edges ``(a, b, w)`` joining the components, from all-pairs MRD between per-component samples."""
    rng = np.random.default_rng(seed)
    per = comp.size if comp.size <= JOIN_SAMPLE_TOTAL else max(16, JOIN_SAMPLE_TOTAL // n_comp)
    reps = []
    for c in range(n_comp):
        members = np.flatnonzero(comp == c)
        reps.append(rng.choice(members, size=per, replace=False) if members.size > per else members)
    sizes = np.array([r.size for r in reps])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rep_idx = np.concatenate(reps)
    x = np.ascontiguousarray(data[rep_idx], dtype=np.float32)
    c_rep = core[rep_idx]

    def mrd_block(rows: np.ndarray, cols: slice) -> np.ndarray:
        d = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (x[rows] @ x[cols].T)).astype(np.float64))
        return np.maximum(d, np.maximum(c_rep[rows][:, None], c_rep[cols][None, :]))

    def rows_of(a: int) -> np.ndarray:
        return np.arange(starts[a], starts[a] + sizes[a])

    chunk = max(1, BLOCK_BYTES // (8 * x.shape[0]))  # bounded memory whatever the component sizes
    weights = np.full((n_comp, n_comp), np.inf)
    for a in range(n_comp):
        rows = rows_of(a)
        for s in range(0, rows.size, chunk):
            block_min = np.minimum.reduceat(mrd_block(rows[s : s + chunk], slice(None)), starts, axis=1).min(axis=0)
            weights[a] = np.minimum(weights[a], block_min)
    np.fill_diagonal(weights, 0.0)
    tree = minimum_spanning_tree(weights + _TINY - np.eye(n_comp) * _TINY).tocoo()
    edges = []
    for a, b in zip(tree.row, tree.col):
        rows, cols = rows_of(int(a)), slice(starts[b], starts[b] + sizes[b])
        best = (np.inf, 0, 0)
        for s in range(0, rows.size, chunk):
            block = mrd_block(rows[s : s + chunk], cols)
            i, j = np.unravel_index(int(np.argmin(block)), block.shape)
            if block[i, j] < best[0]:
                best = (block[i, j], rows[s + i], starts[b] + j)
        edges.append((rep_idx[best[1]], rep_idx[best[2]], best[0]))
    return np.array(edges, dtype=np.float64).reshape(-1, 3)


def mutual_reachability_mst(data: np.ndarray, min_samples: int, seed: int = 0, **knn_options) -> np.ndarray:
    """MST edges ``(a, b, weight)`` (n-1 rows, sorted by weight) of the kNN mutual-reachability graph."""
    n = data.shape[0]
    idx, dist = knn(data, min_samples + 1 + EXTRA_NEIGHBOURS, seed=seed, **knn_options)
    core = core_distances(dist, min_samples)
    graph = _mrd_edges(idx, dist, core)
    forest = minimum_spanning_tree(graph).tocoo()
    edges = np.column_stack([forest.row, forest.col, forest.data - _TINY]).astype(np.float64)
    n_comp, comp = connected_components(graph, directed=False)
    if n_comp > 1:
        edges = np.vstack([edges, _join_components(data, core, comp, n_comp, seed)])
    if edges.shape[0] != n - 1:
        raise RuntimeError(f"spanning tree has {edges.shape[0]} edges for {n} points")
    edges[:, 2] = np.maximum(edges[:, 2], 0.0)
    return edges[np.argsort(edges[:, 2], kind="stable")]


def cluster(data: np.ndarray, params: HDBSCANParams) -> np.ndarray:
    """HDBSCAN labels (int32, -1 = outlier) of the rows of ``data``."""
    from hdbscan._hdbscan_linkage import label
    from hdbscan.hdbscan_ import _tree_to_labels

    n = data.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 vectors to cluster, got {n}")
    mst = mutual_reachability_mst(data, params.min_samples)
    single_linkage = label(mst)
    labels = _tree_to_labels(
        None,
        single_linkage,
        min_cluster_size=params.min_cluster_size,
        cluster_selection_method=params.cluster_selection_method,
        allow_single_cluster=params.allow_single_cluster,
        cluster_selection_epsilon=params.cluster_selection_epsilon,
    )[0]
    return labels.astype(np.int32, copy=False)
