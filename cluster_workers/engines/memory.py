"""How much memory one worker needs for one model: the formula behind the coordinator's plan.

Bytes, for ``n`` vectors of dimension ``d`` with ``min_samples`` (hdbscan's
convention), every vector assumed distinct (copies only make it smaller):

=====================  ============================================================
the vectors            ``4·n·d`` (float32, one copy: the engine reorders it in place)
group maxima           ``4·n·ceil(n / group)``, at most ``group_maxima_bytes`` (512 MiB)
screen heaps           ``8·n·m`` while that fits ``max(heap_bytes, 4·n·d)`` (256 MiB or the vectors' size), else
                       ``8·block_rows·m`` (row blocks); ``m = max(L, ms + 1) + margin``
rerank                 ``rerank_bytes`` (64 MiB)
neighbour lists        ``12·n·L`` (int32 ids, float64 distances), ``L = min(ms + 17, list_cap)``
MST                    ``24·n·slots`` + ``96·n`` (no per-neighbour arrays: weights computed on the fly)
GEMM blocks            ``2 · 4·block_rows·block_cols`` (128 MiB)
tree, labels, ids      ``200·n``
the process itself     ``BASE`` = 400 MiB (Python, numpy, numba, hdbscan, BLAS buffers)
=====================  ============================================================

Nothing in it grows with ``min_samples`` beyond ``list_cap`` but the heaps, and
those switch to row blocks at ``heap_bytes``. The reference engine (the
``hdbscan`` package) holds a float64 copy and its tree: ``≈ 8·n·d·2.5``.
"""

from __future__ import annotations

from cluster_workers.engines.fast import FastOptions
from cluster_workers.engines.neighbours import group_size, heap_width, uses_row_blocks

BASE = 400 * 2**20  # measured: ~330 MiB after imports and a first small clustering, plus joblib and the database driver


def fast_peak_bytes(n: int, dim: int, min_samples: int, options: FastOptions = FastOptions()) -> int:
    """The fast engine's peak for one model (see the table above)."""
    screen = options.screen
    length = min(options.list_length(min_samples), n)
    m = heap_width(n, min_samples, length, screen.margin)
    group = group_size(n, options.group_maxima_bytes, screen.block_rows)
    maxima = 4 * n * (-(-n // group)) if group else 0
    heaps = 8 * (screen.block_rows if uses_row_blocks(n, m, dim, screen) else n) * m
    rerank = screen.rerank_bytes
    lists = 12 * n * length
    mst = 24 * n * options.mst.slots + 96 * n
    gemm = 2 * 4 * screen.block_rows * screen.block_cols
    return int(4 * n * dim + maxima + max(heaps + rerank, mst) + lists + gemm + 200 * n + BASE)


def reference_peak_bytes(n: int, dim: int, min_samples: int) -> int:
    """The ``hdbscan`` package's peak, roughly: a float64 copy, its KD-tree and Prim's arrays."""
    return int(20 * n * dim + 200 * n + BASE)


def evoc_peak_bytes(n: int, dim: int) -> int:
    """The evoc package's peak, roughly: its float32 copies, the kNN graph and its node embedding, the layers.

    Measured (bench/engines.py, fresh processes): 541 MiB at 30,000 x 384 (formula 627), 1,142 MiB at 120,000 x 384
    (1,308), 1,723 MiB at 109,600 x 768 (1,631: the plan's 25% headroom covers it)."""
    return int(10 * n * dim + EVOC_ROW_BYTES * n + BASE)


EVOC_ROW_BYTES = 4096  # per row beyond the vectors (graph, embedding, layers, numba's work arrays)


def peak_bytes(engine: str, n: int, dim: int, min_samples: int) -> int:
    """Estimated peak of one worker clustering ``n`` vectors of ``dim`` with ``engine``."""
    if engine == "reference":
        return reference_peak_bytes(n, dim, min_samples)
    if engine == "evoc":
        return evoc_peak_bytes(n, dim)
    return fast_peak_bytes(n, dim, min_samples)
