"""Upper bounds on a point's inner products with a group of rows, from the group's spherical cap.

Rows come in cell order (:mod:`.order`), so each group of ``size`` consecutive
rows is compact: its unit vectors lie in a cap of angular radius ``r`` about
their normalised mean ``c``. For a unit vector ``a`` and any member ``b``, the
triangle inequality on the sphere gives ``angle(a, b) >= angle(a, c) - r``, so::

    a . b  <=  cos(max(0, angle(a, c) - r))
           =   (a . c) cos r + sqrt(1 - (a . c)^2) sin r     when a . c < cos r, else 1

-- no trigonometry per pair, one GEMM ``X @ C.T`` for all of them. The bound
is made safe against float32 rounding by ``DOT_SLACK`` on ``a . c`` and on the
cap, and ``BOUND_SLACK`` on the result (a GEMM inner product may exceed the
exact one by that much).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

DOT_SLACK = 1e-4  # float32 GEMM error on a . c (768-d unit vectors), with room to spare
BOUND_SLACK = 1e-5  # float32 error on a screened inner product


@njit(parallel=True, cache=True, nogil=True)
def _cap_cosines(x: np.ndarray, centroids: np.ndarray, size: int) -> np.ndarray:
    """Per group: the smallest inner product of a member with the centroid (float64 sums)."""
    n, d = x.shape
    n_groups = centroids.shape[0]
    out = np.empty(n_groups)
    for g in prange(n_groups):
        low = 1.0
        for b in range(g * size, min(n, (g + 1) * size)):
            acc = 0.0
            for t in range(d):
                acc += np.float64(x[b, t]) * np.float64(centroids[g, t])
            low = min(low, acc)
        out[g] = low
    return out


def group_caps(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(centroids, cos_r)``: each group's unit mean (float32) and the cosine of a safe cap radius (float64)."""
    starts = np.arange(0, x.shape[0], size)
    sums = np.add.reduceat(x.astype(np.float64), starts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    centroids = np.ascontiguousarray(sums / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    cos_r = np.clip(_cap_cosines(x, centroids, size) - DOT_SLACK, -1.0, 1.0)
    return centroids, cos_r


@njit(parallel=True, cache=True, nogil=True)
def _dots_to_bounds(dots: np.ndarray, cos_r: np.ndarray) -> None:
    """Turn ``dots[a, g] = a . c_g`` into the cap bound on ``a . b`` for members ``b`` of ``g``, in place."""
    sin_r = np.sqrt(1.0 - cos_r * cos_r)
    for a in prange(dots.shape[0]):
        row = dots[a]
        for g in range(row.shape[0]):
            p = min(1.0, np.float64(row[g]) + DOT_SLACK)
            if p >= cos_r[g]:
                row[g] = 1.0 + BOUND_SLACK
            else:
                row[g] = p * cos_r[g] + np.sqrt(1.0 - p * p) * sin_r[g] + BOUND_SLACK


def cap_bounds(x: np.ndarray, size: int, out: np.ndarray) -> np.ndarray:
    """``out[a, g]`` (``n × groups`` float32): an upper bound on ``x[a] . x[b]`` over the rows ``b`` of group ``g``.

    Returns the group centroids (their inner products order the groups by nearness).
    """
    centroids, cos_r = group_caps(x, size)
    np.matmul(x, centroids.T, out=out)
    _dots_to_bounds(out, cos_r)
    return centroids
