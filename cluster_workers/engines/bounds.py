"""How far a float32 GEMM inner product can be from the exact distance it stands for.

For rows ``a``, ``b`` of a float32 matrix ``x`` (L2-normalised in float32, so
squared norms ``n_a`` lie within ``eta`` of 1), the exact distance satisfies

    ||a - b||² = n_a + n_b - 2 <a, b>

and the screen uses the *unit similarity* ``σ(a, b) = 1 - ||a - b||² / 2``.
A float32 dot product of length ``d``, summed in any order, with or without
fused multiply-adds, is within ``γ_d · ||a|| ||b||`` of the exact one
(``γ_d = d·u / (1 - d·u)``, ``u = 2⁻²⁴``; Higham, *Accuracy and Stability of
Numerical Algorithms*, §3.1; BLAS GEMM kernels compute each entry as such a
dot product, blocked or not). So every screened value ``s`` satisfies

    |s - σ(a, b)| ≤ γ_d · max n  +  eta  =: err

and a screened value tells the true distance only to within that: at
``d = 768`` ``err`` is about 4.6e-5, a squared distance of 9.2e-5, i.e. any
two points closer than about 0.0096 look alike. Everything the engine decides
from float32 is decided with this ``err``; what it cannot decide is computed
again in float64 with direct differences (:mod:`.neighbours`, :mod:`.mst`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

UNIT_ROUNDOFF = 2.0**-24  # float32, round to nearest
FLOAT64_MARGIN = 1e-12  # the float64 arithmetic that applies the bound (norms, squares): far below it


def similarity_error(*xs: np.ndarray, block: int = 65_536) -> float:
    """``err`` above for the rows of ``x`` (float32): a bound on ``|s - σ|`` for every screened pair
    (several matrices: every pair of rows of any of them, as when queries meet a sample)."""
    d = xs[0].shape[1]
    gamma = d * UNIT_ROUNDOFF / (1.0 - d * UNIT_ROUNDOFF)
    top, eta = 0.0, 0.0
    for x in xs:
        for s in range(0, x.shape[0], block):
            part = x[s : s + block].astype(np.float64)
            sq = np.einsum("ij,ij->i", part, part)
            top, eta = max(top, float(sq.max())), max(eta, float(np.abs(sq - 1.0).max()))
    return gamma * top + eta + FLOAT64_MARGIN


@njit(cache=True, nogil=True, inline="always")
def distance_floor(s: float, err: float) -> float:
    """The smallest distance a pair with screened similarity ``s`` can have."""
    d2 = 2.0 - 2.0 * (np.float64(s) + err)
    return np.sqrt(d2) if d2 > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def distance_ceiling(s: float, err: float) -> float:
    """The largest distance a pair with screened similarity ``s`` can have."""
    d2 = 2.0 - 2.0 * (np.float64(s) - err)
    return np.sqrt(d2) if d2 > 0.0 else 0.0


@njit(cache=True, nogil=True, inline="always")
def similarity_floor(distance: float, err: float) -> float:
    """Screened similarities at or below this belong to pairs at least ``distance`` apart."""
    return 1.0 - 0.5 * distance * distance - err if distance < 2.0 + err else -np.inf


# --- the same bounds on arrays (numpy), for the vectorised screens; bitwise what the scalar forms give -----------


def distance_floors(s: np.ndarray, err: float) -> np.ndarray:
    """:func:`distance_floor` of every screened similarity in ``s``."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (np.asarray(s, dtype=np.float64) + err)))


def distance_ceilings(s: np.ndarray, err: float) -> np.ndarray:
    """:func:`distance_ceiling` of every screened similarity in ``s``."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (np.asarray(s, dtype=np.float64) - err)))


def similarity_floors(distance: np.ndarray, err: float) -> np.ndarray:
    """:func:`similarity_floor` of every distance (past ``2 + err`` it lies below every similarity anyway)."""
    return 1.0 - 0.5 * distance * distance - err


def similarity_cuts32(distance: np.ndarray, err: float) -> np.ndarray:
    """:func:`similarity_floors` as float32, rounded down so that it stays a bound in a float32 comparison."""
    return np.nextafter(similarity_floors(distance, err).astype(np.float32), np.float32(-np.inf))
