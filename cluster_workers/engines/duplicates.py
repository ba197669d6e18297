"""Identical rows found once, so that the engine clusters each distinct vector once (with its count).

Copies of one caption embedded in one batch are bit-identical. HDBSCAN treats
them as separate points at distance 0; :mod:`.fast` clusters one row per
distinct vector, weighted by its count, and expands the tree afterwards (see
:func:`cluster_workers.engines.fast.expand_tree`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(cache=True)
def _row_hashes(words: np.ndarray) -> np.ndarray:
    """FNV-1a over each row's 32-bit words."""
    out = np.empty(words.shape[0], dtype=np.uint64)
    for i in range(words.shape[0]):
        h = _FNV_OFFSET
        for t in range(words.shape[1]):
            h = (h ^ np.uint64(words[i, t])) * _FNV_PRIME
        out[i] = h
    return out


@njit(cache=True)
def _first_copies(words: np.ndarray, order: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Per row: the smallest index of a row with the same bytes (``order``: rows stably sorted by hash)."""
    n = order.size
    first = np.arange(words.shape[0])
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and hashes[order[stop]] == hashes[order[start]]:
            stop += 1
        reps = np.empty(stop - start, dtype=np.int64)  # the run's distinct rows so far (collisions stay apart)
        reps[0] = order[start]
        n_reps = 1
        for p in range(start + 1, stop):
            a = order[p]
            for q in range(n_reps):
                b = reps[q]
                same = True
                for t in range(words.shape[1]):
                    if words[a, t] != words[b, t]:
                        same = False
                        break
                if same:  # stable order: b < a, the earlier copy represents both
                    first[a] = b
                    break
            if first[a] == a:
                reps[n_reps] = a
                n_reps += 1
        start = stop
    return first


def distinct_rows(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, inverse, counts)``: each distinct row's first index (ascending), each row's distinct id, counts."""
    words = np.ascontiguousarray(data).view(np.uint32)
    hashes = _row_hashes(words)
    order = np.argsort(hashes, kind="stable")
    first_of = _first_copies(words, order, hashes)
    first, inverse = np.unique(first_of, return_inverse=True)
    return first, inverse.astype(np.int64), np.bincount(inverse).astype(np.int64)
